// The native LongCat-Video DiT built from the released 13.6 B config (no weights) has exactly
// the state-dict names, shapes and load dtypes of the official class (dump made by
// tools/reference/dump_keys.py); its config is read strictly (block-sparse attention refused);
// bad inputs are errors naming them; the official checkpoint folder (dit/, sharded) and
// FastVideo's split names load and export back to themselves exactly; the K/V cache a return_kv forward gives back, fed to
// the next forward as it is, continues the video.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "parity/parity_case.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path fixtures() { return testing::source_path("tests/fixtures/longcat"); }
fs::path tiny_case() { return fixtures() / "varlen_batch2"; }

TEST(LongcatRealConfig, ParametersMatchTheReferenceDump) {
  testing::expect_parameters_match_dump(fixtures() / "keys", "LongCat-Video");
}

// The tiny case's config with `changes` applied (a null value removes the key).
fs::path config_with(const nlohmann::json& changes) {
  std::ifstream in(tiny_case() / "transformer/config.json");
  auto config = nlohmann::json::parse(in);
  config.merge_patch(changes);
  const fs::path dir = testing::temp_dir("longcat_config");
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

TEST(LongcatConfig, IsReadStrictly) {
  EXPECT_NE(build_error({{"enable_bsa", true}}).find("block-sparse attention"), std::string::npos);
  EXPECT_NE(build_error({{"qk_norm", true}}).find("'qk_norm'"), std::string::npos);
  EXPECT_NE(build_error({{"depth", "2"}}).find("depth"), std::string::npos);
  EXPECT_NE(build_error({{"num_heads", 8}}).find("multiple of 8"), std::string::npos);
  EXPECT_NE(build_error({{"patch_size", {2, 2, 2}}}).find("temporal patch is 1"), std::string::npos);
  // The runtime switches are accepted; a bsa_params dict is read only with BSA on; a null
  // cp_split_hw means no split.
  EXPECT_EQ(build_error({{"enable_flashattn3", true}, {"bsa_params", {{"sparsity", 0.9}}}, {"cp_split_hw", nullptr}}),
            "no error");
  // Every field has the constructor's default (the released model's value).
  const auto model = build_transformer(config_with({{"depth", nullptr}, {"mlp_ratio", nullptr}}));
  EXPECT_NE(model->find_parameter("blocks.47.ffn.w1.weight"), nullptr);
  EXPECT_EQ(model->find_parameter("blocks.0.ffn.w1.weight")->shape, (Shape{256, 32}));  // 2/3 of 4D, to 256
}

std::string forward_error(DiTModel& model, const TensorMap& inputs, const ArgMap& args = {}) {
  try {
    model.forward(inputs, args);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(LongcatModel, RejectsBadInputsNamingThem) {
  auto model = build_transformer(tiny_case());
  randomize_parameters(*model, LoadOptions{}, 3);
  const TensorMap good = read_model_inputs(tiny_case() / "inputs.safetensors", *model, Device::cpu());
  const auto with = [&](const std::string& name, const Tensor& value) {
    TensorMap inputs = good;
    inputs[name] = value;
    return inputs;
  };
  const auto random = [](const Shape& shape) { return testing::random_tensor(shape, 5); };
  EXPECT_NE(forward_error(*model, with("hidden_states", random({2, 4, 3, 7, 12}))).find("multiples of patch_size"),
            std::string::npos);
  EXPECT_NE(forward_error(*model, with("timestep", random({2, 2}))).find("per latent frame [2, 3]"),
            std::string::npos);
  EXPECT_NE(forward_error(*model, with("encoder_hidden_states", random({2, 7, 24}))).find("encoder_hidden_states"),
            std::string::npos);
  EXPECT_NE(forward_error(*model, with("encoder_attention_mask", random({2, 6}))).find("encoder_attention_mask"),
            std::string::npos);
  EXPECT_NE(forward_error(*model, good, {{"num_cond_latents", int64_t{4}}}).find("num_cond_latents 4"),
            std::string::npos);
  const Tensor cache = random({1, 2, 24, 16});  // one frame of 4 x 6 tokens
  EXPECT_NE(forward_error(*model, with("kv_cache.0.k", cache)).find("needs num_cond_latents"), std::string::npos);
  const ArgMap one_frame{{"num_cond_latents", int64_t{1}}};
  EXPECT_NE(forward_error(*model, with("kv_cache.0.k", cache), one_frame).find("every block's k and v"),
            std::string::npos);
  TensorMap short_cache = good;
  for (const char* name : {"kv_cache.0.k", "kv_cache.0.v", "kv_cache.1.k", "kv_cache.1.v"})
    short_cache[name] = random({1, 2, 12, 16});
  EXPECT_NE(forward_error(*model, short_cache, one_frame).find("num_cond_latents 1 frames of 24 tokens"),
            std::string::npos);
  EXPECT_NE(forward_error(*model, with("kv_cache.5.k", cache)).find("kv_cache.5.k"), std::string::npos);
}

TEST(LongcatModel, ExampleInputsRun) {
  auto model = build_transformer(tiny_case());
  randomize_parameters(*model, LoadOptions{}, 3);
  const ExampleShape shape{.batch = 1, .frames = 2, .height = 4, .width = 6, .text_len = 5};
  EXPECT_EQ(model->forward(model->example_inputs(shape, 11)).at("sample").shape(), (Shape{1, 4, 2, 4, 6}));
}

// LongCat-Video's own folder name for its DiT is dit/ (sharded, fused attn.qkv and
// cross_attn.kv_linear: the native names); a repository folder with it resolves to it.
TEST(LongcatModel, TheOfficialDitFolderLoadsAndExportsExactly) {
  const fs::path repo = testing::temp_dir("longcat_repo");
  fs::create_directories(repo / "dit");
  for (const auto& entry : fs::directory_iterator(fixtures() / "dit_sharded" / "transformer"))
    fs::copy_file(entry.path(), repo / "dit" / entry.path().filename(), fs::copy_options::overwrite_existing);
  EXPECT_EQ(resolve_transformer_dir(repo), repo / "dit");
  const auto loaded = load_transformer(repo, LoadOptions{});
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(repo / "dit");
  EXPECT_EQ(checkpoint.names().size(), 56u);  // 10 + 2 blocks x 21 + 4 (port sheet 6.5)
  const auto exported = export_checkpoint(loaded);
  ASSERT_EQ(exported.size(), checkpoint.names().size());
  for (const auto& [name, tensor] : exported) EXPECT_EQ(testing::max_abs_diff(tensor, checkpoint.tensor(name)), 0.0);
}

// The official names as FastVideo's LongCat module tree names them, q|k|v and k|v split.
NamedTensors fastvideo_layout(const SafetensorsCheckpoint& official) {
  const std::vector<std::pair<std::string, std::string>> renames = {
      {"x_embedder.proj.", "patch_embed.proj."},        {"t_embedder.mlp.0.", "time_embedder.linear_1."},
      {"t_embedder.mlp.2.", "time_embedder.linear_2."}, {"y_embedder.y_proj.0.", "caption_embedder.linear_1."},
      {"y_embedder.y_proj.2.", "caption_embedder.linear_2."}, {"adaLN_modulation.1.", "adaln_linear_1."},
      {"pre_crs_attn_norm.", "norm_cross."},             {".attn.proj.", ".self_attn.to_out."},
      {".attn.q_norm.", ".self_attn.q_norm."},             {".attn.k_norm.", ".self_attn.k_norm."},
      {"cross_attn.q_linear.", "cross_attn.to_q."},      {"cross_attn.proj.", "cross_attn.to_out."},
      {"final_layer.linear.", "final_layer.proj."}};
  NamedTensors out;
  for (const auto& name : official.names()) {
    const Tensor t = official.tensor(name);
    const auto split = [&](const std::string& fused, const std::vector<std::string>& parts) {
      const int64_t rows = t.size(0) / static_cast<int64_t>(parts.size());
      const std::string stem = name.substr(0, name.find(fused));
      const std::string leaf = name.substr(name.find(fused) + fused.size());
      for (size_t i = 0; i < parts.size(); ++i)
        out.emplace_back(stem + parts[i] + leaf, t.narrow(0, static_cast<int64_t>(i) * rows, rows).contiguous());
    };
    if (name.find("cross_attn.kv_linear.") != std::string::npos) {
      split("cross_attn.kv_linear.", {"cross_attn.to_k.", "cross_attn.to_v."});
    } else if (name.find(".attn.qkv.") != std::string::npos) {
      split("attn.qkv.", {"self_attn.to_q.", "self_attn.to_k.", "self_attn.to_v."});
    } else {
      std::string renamed = name;
      const bool final_modulation = name.starts_with("final_layer.adaLN_modulation.1.");
      for (const auto& [from, to] : renames)
        if (const auto at = renamed.find(from); at != std::string::npos && !final_modulation) {
          renamed.replace(at, from.size(), to);
          break;
        }
      if (final_modulation) renamed.replace(0, std::string("final_layer.adaLN_modulation.1.").size(),
                                             "final_layer.adaln_linear.");
      out.emplace_back(renamed, t);
    }
  }
  return out;
}

// FastVideo's split names load through the mapping into the official model (the same
// output as the official layout) and export back to themselves exactly.
TEST(LongcatModel, FastVideoSplitLayoutLoadsAndExportsExactly) {
  const fs::path dir = testing::temp_dir("longcat_fastvideo") / "transformer";
  fs::create_directories(dir);
  fs::copy_file(tiny_case() / "transformer/config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  const NamedTensors tensors = fastvideo_layout(SafetensorsCheckpoint::open(tiny_case() / "transformer"));
  EXPECT_EQ(tensors.size(), 56u + 2 * 6);  // per block: q|k|v weight and bias in three, k|v in two
  write_safetensors(dir / "diffusion_pytorch_model.safetensors", tensors);
  const auto loaded = load_transformer(dir, LoadOptions{});
  const TensorMap inputs = read_model_inputs(tiny_case() / "inputs.safetensors", *loaded.model, Device::cpu());
  const Tensor out = loaded.model->forward(inputs).at("sample");
  const SafetensorsFile reference = SafetensorsFile::open(tiny_case() / "outputs.safetensors");
  EXPECT_LE(compare_tensors(out, reference.tensor("sample")).rel_l2, 1e-4);
  const auto exported = export_checkpoint(loaded);
  ASSERT_EQ(exported.size(), tensors.size());
  std::map<std::string, Tensor> by_name(exported.begin(), exported.end());
  for (const auto& [name, tensor] : tensors) {
    ASSERT_TRUE(by_name.count(name)) << name;
    EXPECT_EQ(testing::max_abs_diff(by_name.at(name), tensor), 0.0) << name;
  }
}

// Fused projections (the CUDA default): the FFN's w3 and w1 load into one w13 (rows w3, then
// w1) from the official and the FastVideo layout; the forward gives the unfused forward's
// numbers within testing::fused_projection_bound, in float32 and bfloat16; the weights and the
// export (w1 and w3 back) are exact.
TEST(LongcatModel, FusedFeedForwardIsTheSeparateProjections) {
  LoadOptions fused_options;
  fused_options.fuse_projections = true;
  const auto plain = load_transformer(tiny_case() / "transformer", LoadOptions{});
  const auto fused = load_transformer(tiny_case() / "transformer", fused_options);
  EXPECT_EQ(fused.model->find_parameter("blocks.0.ffn.w1.weight"), nullptr);
  const Tensor w13 = fused.model->find_parameter("blocks.1.ffn.w13.weight")->value;
  const Tensor w1 = plain.model->find_parameter("blocks.1.ffn.w1.weight")->value;
  const Tensor w3 = plain.model->find_parameter("blocks.1.ffn.w3.weight")->value;
  const int64_t hidden = w1.size(0);
  ASSERT_EQ(w13.shape(), (Shape{2 * hidden, w1.size(1)}));
  EXPECT_EQ(testing::max_abs_diff(w13.narrow(0, 0, hidden), w3), 0.0);
  EXPECT_EQ(testing::max_abs_diff(w13.narrow(0, hidden, hidden), w1), 0.0);
  for (DType dtype : {DType::Float32, DType::BFloat16}) {
    LoadOptions a, b = fused_options;
    a.dtype = b.dtype = dtype;
    const auto x = load_transformer(tiny_case() / "transformer", a), y = load_transformer(tiny_case() / "transformer", b);
    const TensorMap inputs = read_model_inputs(tiny_case() / "inputs.safetensors", *x.model, Device::cpu());
    EXPECT_LE(testing::rel_l2(y.model->forward(inputs).at("sample"), x.model->forward(inputs).at("sample")),
              testing::fused_projection_bound(dtype))
        << dtype_name(dtype);
  }
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(tiny_case() / "transformer");
  const auto exported = export_checkpoint(fused);
  ASSERT_EQ(exported.size(), checkpoint.names().size());
  for (const auto& [name, tensor] : exported) EXPECT_EQ(testing::max_abs_diff(tensor, checkpoint.tensor(name)), 0.0) << name;
  // The FastVideo layout's separate names merge the same way.
  const fs::path dir = testing::temp_dir("longcat_fastvideo_fused") / "transformer";
  fs::create_directories(dir);
  fs::copy_file(tiny_case() / "transformer/config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  write_safetensors(dir / "diffusion_pytorch_model.safetensors", fastvideo_layout(checkpoint));
  const auto from_fastvideo = load_transformer(dir, fused_options);
  EXPECT_EQ(testing::max_abs_diff(from_fastvideo.model->find_parameter("blocks.1.ffn.w13.weight")->value, w13), 0.0);
}

// The pipeline's continuation on our side: the cache pass's K/V heads, left where they are
// (the model's device and dtype), are the next forward's kv_cache inputs; the pair gives the
// official continuation's output.
TEST(LongcatModel, ReturnedCacheContinuesTheVideo) {
  auto cache_pass = load_transformer(fixtures() / "kv_cache" / "transformer", LoadOptions{});
  DiTModel& model = *cache_pass.model;
  const fs::path first = fixtures() / "kv_cache", next = fixtures() / "kv_cache_continuation";
  const TensorMap produced = model.forward(read_model_inputs(first / "inputs.safetensors", model, Device::cpu()),
                                           read_args_file(first / "args.json", model.io()));
  TensorMap inputs = read_model_inputs(next / "inputs.safetensors", model, Device::cpu());
  size_t cached = 0;
  for (const auto& [name, tensor] : produced)
    if (name.starts_with("kv_cache.")) inputs[name] = tensor, ++cached;
  EXPECT_EQ(cached, 4u);
  const Tensor out = model.forward(inputs, read_args_file(next / "args.json", model.io())).at("sample");
  const SafetensorsFile reference = SafetensorsFile::open(next / "outputs.safetensors");
  EXPECT_LE(compare_tensors(out, reference.tensor("sample")).rel_l2, 1e-4);
}

}  // namespace
}  // namespace fastdit
