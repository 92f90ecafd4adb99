// The native SD3 model built from real config.json files (no weights) has exactly the
// state-dict names, shapes and load dtypes of the official class (dumps made by
// tools/reference/dump_keys.py with specs/sd3.py); its config is read strictly; bad inputs are errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path keys_dir() { return testing::source_path("tests/fixtures/sd3/keys"); }
fs::path tiny_case() { return testing::source_path("tests/fixtures/sd3/sd35_medium"); }

class SD3RealConfig : public ::testing::TestWithParam<std::string> {};

TEST_P(SD3RealConfig, ParametersMatchTheReferenceDump) {
  testing::expect_parameters_match_dump(keys_dir(), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Variants, SD3RealConfig, ::testing::Values("SD3-medium", "SD3.5-medium", "SD3.5-large"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// The tiny case's config with `changes` applied (a null value removes the key).
fs::path config_with(const nlohmann::json& changes) {
  std::ifstream in(tiny_case() / "transformer/config.json");
  auto config = nlohmann::json::parse(in);
  config.merge_patch(changes);
  const fs::path dir = testing::temp_dir("sd3_config");
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

TEST(SD3Config, IsReadStrictly) {
  EXPECT_NE(build_error({{"rope_theta", 5}}).find("'rope_theta'"), std::string::npos);
  EXPECT_NE(build_error({{"num_layers", "3"}}).find("num_layers"), std::string::npos);
  EXPECT_NE(build_error({{"dual_attention_layers", {0, 3}}}).find("dual_attention_layers entry 3"), std::string::npos);
  EXPECT_NE(build_error({{"qk_norm", "layer_norm"}}).find("qk_norm 'layer_norm'"), std::string::npos);
  EXPECT_NE(build_error({{"caption_projection_dim", 32}}).find("caption_projection_dim 32"), std::string::npos);
  std::ifstream in(tiny_case() / "transformer/config.json");
  auto config = nlohmann::json::parse(in);
  config["pos_embed_max_size"] = nullptr;  // merge_patch would remove it
  const fs::path dir = testing::temp_dir("sd3_null_pos");
  std::ofstream(dir / "config.json") << config.dump();
  try {
    build_transformer(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pos_embed_max_size null"), std::string::npos) << e.what();
  }
}

TEST(SD3Config, NullOutChannelsMeansInChannelsAndMissingKeysTakeTheDefaults) {
  std::ifstream in(tiny_case() / "transformer/config.json");
  auto config = nlohmann::json::parse(in);
  config["out_channels"] = nullptr;
  config.erase("qk_norm");
  config.erase("dual_attention_layers");
  const fs::path dir = testing::temp_dir("sd3_defaults");
  std::ofstream(dir / "config.json") << config.dump();
  auto model = build_transformer(dir);
  EXPECT_EQ(model->arch_config().out_channels, 4);
  EXPECT_EQ(model->find_parameter("transformer_blocks.0.attn.norm_q.weight"), nullptr);
  EXPECT_EQ(model->find_parameter("transformer_blocks.0.attn2.to_q.weight"), nullptr);
}

std::string forward_error(DiTModel& model, TensorMap inputs) {
  try {
    model.forward(inputs);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(SD3Model, BadInputsAreErrorsNamingThem) {
  auto loaded = load_transformer(tiny_case() / "transformer", {});
  DiTModel& model = *loaded.model;
  const TensorMap good = read_model_inputs(tiny_case() / "inputs.safetensors", model, Device::cpu());
  auto with = [&](const std::string& name, const Shape& shape) {
    TensorMap inputs = good;
    inputs[name] = testing::random_tensor(shape, 3);
    return inputs;
  };
  EXPECT_NE(forward_error(model, with("hidden_states", {1, 4, 9, 12})).find("multiples of the patch size"),
            std::string::npos);
  EXPECT_NE(forward_error(model, with("hidden_states", {1, 4, 34, 12})).find("does not fit the 16 x 16"),
            std::string::npos);
  EXPECT_NE(forward_error(model, with("pooled_projections", {1, 11})).find("pooled_projections must be"),
            std::string::npos);
  EXPECT_NE(forward_error(model, with("timestep", {2})).find("timestep must be [1]"), std::string::npos);
  TensorMap missing = good;
  missing.erase("pooled_projections");
  EXPECT_NE(forward_error(model, missing).find("'pooled_projections'"), std::string::npos);
}

TEST(SD3Model, ExampleInputsRunAtAnImageShape) {
  auto model = build_transformer(tiny_case());
  randomize_parameters(*model, LoadOptions{}, 3);
  ExampleShape shape{.batch = 2, .frames = 1, .height = 10, .width = 6, .text_len = 5};
  const Tensor out = model->forward(model->example_inputs(shape, 11)).at("sample");
  EXPECT_EQ(out.shape(), (Shape{2, 4, 10, 6}));
  shape.frames = 21;
  EXPECT_THROW(model->example_inputs(shape, 11), Error);
}

TEST(SD3Model, FusedLoadExportsTheCheckpointExactly) {
  LoadOptions options;
  options.fuse_projections = true;
  const auto loaded = load_transformer(tiny_case() / "transformer", options);
  ASSERT_NE(loaded.model->find_parameter("transformer_blocks.0.attn.to_added_qkv.weight"), nullptr);
  ASSERT_NE(loaded.model->find_parameter("transformer_blocks.0.attn2.to_qkv.weight"), nullptr);
  const SafetensorsFile file = SafetensorsFile::open(tiny_case() / "transformer/diffusion_pytorch_model.safetensors");
  const auto exported = export_checkpoint(loaded);
  ASSERT_EQ(exported.size(), file.names().size());
  for (const auto& [name, tensor] : exported)
    EXPECT_EQ(testing::max_abs_diff(tensor, file.tensor(name)), 0.0) << name;
}

}  // namespace
}  // namespace fastdit
