// The native Stable Audio DiT built from stable-audio-open-1.0's config.json (no weights) has
// exactly the state-dict names, shapes and load dtypes of the official class (dump made by
// tools/reference/dump_keys.py); its config is read strictly; bad inputs are errors; both
// checkpoint layouts load, fused or not, and export back to themselves exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path fixtures() { return testing::source_path("tests/fixtures/stable_audio"); }
fs::path tiny_case() { return fixtures() / "base"; }
fs::path original_case() { return fixtures() / "base_original_layout"; }

TEST(StableAudioRealConfig, ParametersMatchTheReferenceDump) {
  testing::expect_parameters_match_dump(fixtures() / "keys", "stable-audio-open-1.0");
}

// The tiny case's config with `changes` applied (a null value removes the key).
fs::path config_with(const nlohmann::json& changes) {
  std::ifstream in(tiny_case() / "transformer/config.json");
  auto config = nlohmann::json::parse(in);
  config.merge_patch(changes);
  const fs::path dir = testing::temp_dir("stable_audio_config");
  std::ofstream(dir / "config.json") << config.dump();
  return dir;
}

std::string build_error(const nlohmann::json& changes) {
  try {
    build_transformer(config_with(changes));
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(StableAudioConfig, IsReadStrictly) {
  EXPECT_NE(build_error({{"num_memory_tokens", 4}}).find("'num_memory_tokens'"), std::string::npos);
  EXPECT_NE(build_error({{"num_layers", "2"}}).find("num_layers"), std::string::npos);
  EXPECT_NE(build_error({{"num_key_value_attention_heads", 3}}).find("must divide num_attention_heads 4"),
            std::string::npos);
  EXPECT_NE(build_error({{"cross_attention_dim", 12}}).find("cross_attention_dim 12"), std::string::npos);
  EXPECT_NE(build_error({{"time_proj_dim", 15}}).find("time_proj_dim 15"), std::string::npos);
  EXPECT_NE(build_error({{"attention_head_dim", 6}, {"cross_attention_dim", 12}}).find("multiple of 4"),
            std::string::npos);
  // Every field has the constructor's default (stable-audio-open-1.0's value).
  const auto model = build_transformer(config_with({{"sample_size", nullptr}, {"num_layers", nullptr}}));
  EXPECT_EQ(model->find_parameter("transformer_blocks.23.norm1.weight") != nullptr, true);
}

std::string forward_error(DiTModel& model, const TensorMap& inputs) {
  try {
    model.forward(inputs);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(StableAudioModel, RejectsBadInputsNamingThem) {
  auto model = build_transformer(tiny_case());
  randomize_parameters(*model, LoadOptions{}, 3);
  const TensorMap good = read_model_inputs(tiny_case() / "inputs.safetensors", *model, Device::cpu());
  const auto with = [&](const std::string& name, const Tensor& value) {
    TensorMap inputs = good;
    inputs[name] = value;
    return inputs;
  };
  const auto random = [](const Shape& shape) { return testing::random_tensor(shape, 5); };
  EXPECT_NE(forward_error(*model, with("hidden_states", random({2, 5, 16}))).find("hidden_states must be [B, 4, L]"),
            std::string::npos);
  EXPECT_NE(forward_error(*model, with("timestep", random({3}))).find("timestep must be [1]"), std::string::npos);
  EXPECT_NE(forward_error(*model, with("global_hidden_states", random({2, 2, 10}))).find("one token"),
            std::string::npos);
  EXPECT_NE(forward_error(*model, with("encoder_hidden_states", random({2, 5, 7}))).find("encoder_hidden_states"),
            std::string::npos);
  EXPECT_NE(forward_error(*model, with("attention_mask", random({2, 16}))).find("input 'attention_mask' must be a bool tensor"),
            std::string::npos);
  TensorMap missing = good;
  missing.erase("global_hidden_states");
  EXPECT_NE(forward_error(*model, missing).find("global_hidden_states"), std::string::npos);
}

TEST(StableAudioModel, ExampleInputsRunAtAnAudioShape) {
  auto model = build_transformer(tiny_case());
  randomize_parameters(*model, LoadOptions{}, 3);
  ExampleShape shape{.batch = 2, .frames = 1, .height = 1, .width = 37, .text_len = 9};
  const Tensor out = model->forward(model->example_inputs(shape, 11)).at("sample");
  EXPECT_EQ(out.shape(), (Shape{2, 4, 37}));
  shape.height = 8;
  EXPECT_THROW(model->example_inputs(shape, 11), Error);
}

// Every checkpoint tensor exported from a load is the file's tensor, bit for bit, except the
// rotary buffer, which the model does not read.
void expect_exports_exactly(const fs::path& case_dir, bool fused) {
  LoadOptions options;
  options.fuse_projections = fused;
  const auto loaded = load_transformer(case_dir / "transformer", options);
  EXPECT_EQ(loaded.model->find_parameter("transformer_blocks.0.attn1.to_qkv.weight") != nullptr, fused);
  EXPECT_EQ(loaded.model->find_parameter("transformer_blocks.0.attn2.to_kv.weight") != nullptr, fused);
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(case_dir / "transformer");
  const auto exported = export_checkpoint(loaded);
  size_t ignored = 0;
  for (const auto& name : checkpoint.names()) ignored += name.ends_with("rotary_pos_emb.inv_freq");
  ASSERT_EQ(exported.size() + ignored, checkpoint.names().size());
  for (const auto& [name, tensor] : exported) {
    const Tensor original = checkpoint.tensor(name);
    EXPECT_EQ(tensor.shape(), original.shape()) << name;
    EXPECT_EQ(testing::max_abs_diff(tensor, original), 0.0) << name;
  }
}

TEST(StableAudioModel, DiffusersLayoutExportsExactly) {
  expect_exports_exactly(tiny_case(), false);
  expect_exports_exactly(tiny_case(), true);
}

TEST(StableAudioModel, OriginalLayoutExportsExactly) {
  expect_exports_exactly(original_case(), false);
  expect_exports_exactly(original_case(), true);
}

// The original layout exported, written as a checkpoint and loaded again gives the same
// parameters as the diffusers layout of the same weights.
TEST(StableAudioModel, OriginalExportReloadsToTheDiffusersParameters) {
  const auto loaded = load_transformer(original_case() / "transformer", {});
  const fs::path dir = testing::temp_dir("stable_audio_export");
  fs::copy_file(original_case() / "transformer/config.json", dir / "config.json");
  write_safetensors(dir / "model.safetensors", export_checkpoint(loaded));
  const auto reloaded = load_transformer(dir, {});
  const auto diffusers = load_transformer(tiny_case() / "transformer", {});
  const auto params = diffusers.model->named_parameters();
  ASSERT_EQ(params.size(), reloaded.model->named_parameters().size());
  for (const auto& [name, param] : params) {
    const nn::Parameter* other = reloaded.model->find_parameter(name);
    ASSERT_NE(other, nullptr) << name;
    EXPECT_EQ(other->value.shape(), param->value.shape()) << name;
    EXPECT_EQ(testing::max_abs_diff(other->value, param->value), 0.0) << name;
  }
}

TEST(StableAudioModel, AStrayOriginalTensorIsAnError) {
  const fs::path dir = testing::temp_dir("stable_audio_stray");
  fs::copy_file(original_case() / "transformer/config.json", dir / "config.json");
  const SafetensorsFile file = SafetensorsFile::open(original_case() / "transformer/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& name : file.names()) tensors.emplace_back(name, file.tensor(name));
  tensors.emplace_back("model.model.transformer.layers.0.self_attn.q_norm.weight", testing::random_tensor({8}, 1));
  write_safetensors(dir / "model.safetensors", tensors);
  try {
    load_transformer(dir, {});
    FAIL() << "a tensor with no parameter loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("self_attn.q_norm.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fastdit
