// The native Flux.1 model built from the real FLUX.1-dev and -schnell configs (no weights) has
// exactly the state-dict names, shapes and load dtypes of the official class (dumps made by
// tools/reference/dump_keys.py with specs/flux.py); its config is read strictly; bad inputs
// are errors; both checkpoint layouts export back exactly and load the same parameters; the
// deprecated 3-D ids mean their item 0.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "sampling/flux_pipeline.h"
#include "sampling/scheduler.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path keys_dir() { return testing::source_path("tests/fixtures/flux/keys"); }
fs::path fixture(const std::string& name) { return testing::source_path("tests/fixtures/flux/" + name); }

class FluxRealConfig : public ::testing::TestWithParam<std::string> {};

TEST_P(FluxRealConfig, ParametersMatchTheReferenceDump) {
  testing::expect_parameters_match_dump(keys_dir(), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Variants, FluxRealConfig, ::testing::Values("FLUX.1-dev", "FLUX.1-schnell"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// The dev case's config with `changes` applied (a null value removes the key).
fs::path config_with(const nlohmann::json& changes) {
  std::ifstream in(fixture("dev") / "transformer/config.json");
  auto config = nlohmann::json::parse(in);
  config.merge_patch(changes);
  const fs::path dir = testing::temp_dir("flux_config");
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

TEST(FluxConfig, IsReadStrictly) {
  EXPECT_NE(build_error({{"mlp_ratio", 4}}).find("'mlp_ratio'"), std::string::npos);
  EXPECT_NE(build_error({{"guidance_embeds", 1}}).find("guidance_embeds"), std::string::npos);
  EXPECT_NE(build_error({{"num_single_layers", "2"}}).find("num_single_layers"), std::string::npos);
  EXPECT_NE(build_error({{"axes_dims_rope", {4, 6, 8}}}).find("axes_dims_rope sums to 18"), std::string::npos);
  EXPECT_NE(build_error({{"axes_dims_rope", {5, 5, 6}}}).find("axes_dims_rope entry 5"), std::string::npos);
  EXPECT_NE(build_error({{"num_layers", 0}, {"num_single_layers", 0}}).find("not both zero"), std::string::npos);
}

TEST(FluxConfig, NullOutChannelsMeansInChannelsAndMissingKeysTakeTheDefaults) {
  auto dev = build_transformer(config_with(nlohmann::json::object()));
  EXPECT_EQ(dev->arch_config().out_channels, 16);  // the case's out_channels is null
  EXPECT_NE(dev->find_parameter("time_text_embed.guidance_embedder.linear_1.weight"), nullptr);
  // Without guidance_embeds (the constructor's default False): schnell's embedder.
  auto schnell = build_transformer(config_with({{"guidance_embeds", nullptr}}));
  EXPECT_EQ(schnell->find_parameter("time_text_embed.guidance_embedder.linear_1.weight"), nullptr);
  EXPECT_EQ(schnell->io().find_tensor("guidance"), nullptr);
}

std::string forward_error(DiTModel& model, TensorMap inputs) {
  try {
    model.forward(inputs);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(FluxModel, BadInputsAreErrorsNamingThem) {
  auto loaded = load_transformer(fixture("dev") / "transformer", {});
  DiTModel& model = *loaded.model;
  const TensorMap good = read_model_inputs(fixture("dev") / "inputs.safetensors", model, Device::cpu());
  auto with = [&](const std::string& name, const Shape& shape) {
    TensorMap inputs = good;
    inputs[name] = testing::random_tensor(shape, 3);
    return inputs;
  };
  EXPECT_NE(forward_error(model, with("hidden_states", {1, 16, 12})).find("packed latents"), std::string::npos);
  EXPECT_NE(forward_error(model, with("img_ids", {15, 3})).find("img_ids must be [16, 3]"), std::string::npos);
  EXPECT_NE(forward_error(model, with("txt_ids", {5, 2})).find("txt_ids must be [5, 3]"), std::string::npos);
  EXPECT_NE(forward_error(model, with("guidance", {2})).find("guidance must be [1]"), std::string::npos);
  EXPECT_NE(forward_error(model, with("pooled_projections", {1, 9})).find("pooled_projections must be"),
            std::string::npos);
  TensorMap missing = good;
  missing.erase("guidance");
  EXPECT_NE(forward_error(model, missing).find("'guidance'"), std::string::npos);

  auto schnell = load_transformer(fixture("schnell_batch2") / "transformer", {});
  TensorMap extra = read_model_inputs(fixture("schnell_batch2") / "inputs.safetensors", *schnell.model, Device::cpu());
  extra["guidance"] = testing::random_tensor({2}, 4);
  EXPECT_NE(forward_error(*schnell.model, extra).find("'guidance'"), std::string::npos);
}

TEST(FluxModel, DeprecatedThreeDimensionalIdsMeanTheirFirstItem) {
  auto loaded = load_transformer(fixture("ids_3d") / "transformer", {});
  TensorMap inputs = read_model_inputs(fixture("ids_3d") / "inputs.safetensors", *loaded.model, Device::cpu());
  ASSERT_EQ(inputs.at("img_ids").dim(), 3);
  const Tensor as_given = loaded.model->forward(inputs).at("sample");
  for (const char* ids : {"img_ids", "txt_ids"}) inputs[ids] = inputs.at(ids).narrow(0, 0, 1).squeeze(0).contiguous();
  EXPECT_EQ(testing::max_abs_diff(loaded.model->forward(inputs).at("sample"), as_given), 0.0);
}

TEST(FluxModel, ExampleInputsRunAtAnImageShape) {
  auto model = build_transformer(fixture("dev"));
  randomize_parameters(*model, LoadOptions{}, 3);
  ExampleShape shape{.batch = 2, .frames = 1, .height = 6, .width = 10, .text_len = 5};
  const Tensor out = model->forward(model->example_inputs(shape, 11)).at("sample");
  EXPECT_EQ(out.shape(), (Shape{2, 15, 16}));
  shape.height = 7;
  EXPECT_THROW(model->example_inputs(shape, 11), Error);
}

// What FluxPipeline adds around the loop (pipeline_flux.py): ids (0, row, col) on the packed
// grid and text ids zeros, guidance [B] in float32 only for a guidance-distilled model, the
// timestep t / 1000, sigmas linspace(1, 1/steps, steps) and mu from the image tokens; no CFG.
TEST(FluxPipelineRequest, IsBuiltAsFluxPipelineBuildsIt) {
  for (const char* name : {"dev", "schnell_batch2"}) {
    auto model = build_transformer(fixture(name));
    const bool dev = std::string(name) == "dev";
    auto scheduler = sampling::make_scheduler(sampling::flux_scheduler_config(dev), "scheduler");
    const sampling::PackedGrid grid = sampling::flux_packed_grid(64, 96, 8);
    ASSERT_EQ(grid.rows, 4);
    ASSERT_EQ(grid.cols, 6);
    sampling::DenoiseRequest r;
    r.expert = {model.get(), 3.5};
    r.steps = 6;
    r.latents = Tensor::zeros({2, grid.tokens(), 16}, DType::Float32);
    r.prompt_embeds = Tensor::zeros({2, 5, 12}, DType::Float32);
    sampling::prepare_flux_request(r, *model, *scheduler, grid, Tensor::zeros({2, 8}, DType::Float32), 3.5);
    EXPECT_EQ(r.expert.guidance_scale, 1.0) << "no classifier-free guidance";
    EXPECT_EQ(r.timestep_divisor, 1000.0f);
    EXPECT_EQ(r.sigmas, sampling::linspace(1.0, 1.0 / 6, 6));
    EXPECT_DOUBLE_EQ(*r.mu, sampling::calculate_shift(24, scheduler->shift_anchors()));
    EXPECT_EQ(r.conditioning.at("txt_ids").shape(), (Shape{5, 3}));
    EXPECT_EQ(r.conditioning.at("txt_ids").to_float_vector(), std::vector<float>(15, 0.0f));
    const std::vector<float> ids = r.conditioning.at("img_ids").to_float_vector();
    ASSERT_EQ(ids.size(), 24u * 3);
    EXPECT_EQ((std::vector<float>(ids.begin() + 7 * 3, ids.begin() + 8 * 3)), (std::vector<float>{0, 1, 1}));
    EXPECT_EQ(r.conditioning.count("guidance"), dev ? 1u : 0u) << name;
    if (dev) EXPECT_EQ(r.conditioning.at("guidance").to_float_vector(), (std::vector<float>{3.5f, 3.5f}));
    // The request runs: two steps of the real loop on the tiny model.
    r.steps = 2;
    sampling::prepare_flux_request(r, *model, *scheduler, grid, Tensor::zeros({2, 8}, DType::Float32), 3.5);
    randomize_parameters(*model, LoadOptions{}, 5);
    EXPECT_EQ(sampling::denoise(*scheduler, r).shape(), (Shape{2, 24, 16}));
    // Latents that are not the grid's packed tokens are refused.
    r.latents = Tensor::zeros({2, 23, 16}, DType::Float32);
    EXPECT_THROW(sampling::prepare_flux_request(r, *model, *scheduler, grid, Tensor::zeros({2, 8}, DType::Float32), 3.5),
                 Error);
  }
  // _pack_latents: token (r, c) holds (channel, py, px) channel-major.
  Tensor x = Tensor::zeros({1, 2, 2, 4}, DType::Float32);
  float* p = x.data<float>();
  for (int i = 0; i < 16; ++i) p[i] = static_cast<float>(i);
  const Tensor packed = sampling::pack_latents(x);
  ASSERT_EQ(packed.shape(), (Shape{1, 2, 8}));
  EXPECT_EQ(packed.to_float_vector(), (std::vector<float>{0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15}));
}

void expect_exports_exactly(const std::string& name, const std::string& file, bool fused = false) {
  LoadOptions options;
  options.fuse_projections = fused;
  const auto loaded = load_transformer(fixture(name) / "transformer", options);
  const SafetensorsFile original = SafetensorsFile::open(fixture(name) / "transformer" / file);
  const auto exported = export_checkpoint(loaded);
  ASSERT_EQ(exported.size(), original.names().size()) << name;
  for (const auto& [tensor_name, tensor] : exported) {
    ASSERT_EQ(tensor.shape(), original.tensor(tensor_name).shape()) << tensor_name;
    EXPECT_EQ(std::memcmp(tensor.data_ptr(), original.tensor(tensor_name).data_ptr(), tensor.nbytes()), 0)
        << name << " " << tensor_name;
  }
}

TEST(FluxLoading, BothLayoutsExportBackExactly) {
  expect_exports_exactly("dev", "diffusion_pytorch_model.safetensors");
  expect_exports_exactly("dev_original_layout", "flux1.safetensors");
  expect_exports_exactly("schnell_original_layout", "flux1.safetensors");
}

// Fused projections: to_qkv / to_added_qkv per double block, to_qkv_mlp = q|k|v|proj_mlp
// per single block (Black Forest Labs' linear1 taken whole), and back out exactly.
TEST(FluxLoading, FusedProjectionsLoadFromBothLayoutsAndExportBackExactly) {
  for (const char* name : {"dev", "dev_original_layout"}) {
    LoadOptions options;
    options.fuse_projections = true;
    const auto loaded = load_transformer(fixture(name) / "transformer", options);
    for (const char* param : {"transformer_blocks.0.attn.to_qkv.weight", "transformer_blocks.0.attn.to_added_qkv.bias",
                              "single_transformer_blocks.1.to_qkv_mlp.weight"})
      EXPECT_NE(loaded.model->find_parameter(param), nullptr) << name << " " << param;
    EXPECT_EQ(loaded.model->find_parameter("single_transformer_blocks.1.proj_mlp.weight"), nullptr);
    EXPECT_EQ(loaded.model->find_parameter("transformer_blocks.0.attn.to_q.weight"), nullptr);
  }
  // The fused rows are the separate parameters in order: q, k, v, then the MLP's input.
  const auto fused = load_transformer(fixture("dev") / "transformer", [] {
    LoadOptions o;
    o.fuse_projections = true;
    return o;
  }());
  const auto plain = load_transformer(fixture("dev") / "transformer", {});
  const Tensor joined = fused.model->find_parameter("single_transformer_blocks.0.to_qkv_mlp.weight")->value;
  const int64_t d = joined.size(1);
  EXPECT_EQ(testing::max_abs_diff(joined.narrow(0, d, d),
                                  plain.model->find_parameter("single_transformer_blocks.0.attn.to_k.weight")->value),
            0.0);
  EXPECT_EQ(testing::max_abs_diff(joined.narrow(0, 3 * d, 4 * d),
                                  plain.model->find_parameter("single_transformer_blocks.0.proj_mlp.weight")->value),
            0.0);
  expect_exports_exactly("dev", "diffusion_pytorch_model.safetensors", true);
  expect_exports_exactly("dev_original_layout", "flux1.safetensors", true);
  expect_exports_exactly("schnell_original_layout", "flux1.safetensors", true);
}

TEST(FluxLoading, TheOriginalLayoutLoadsTheDiffusersParametersBitForBit) {
  for (const auto& [original, diffusers] :
       {std::pair{"dev_original_layout", "dev"}, std::pair{"schnell_original_layout", "schnell_batch2"}}) {
    const auto a = load_transformer(fixture(original) / "transformer", {});
    const auto b = load_transformer(fixture(diffusers) / "transformer", {});
    const auto params = b.model->named_parameters();
    ASSERT_EQ(a.model->named_parameters().size(), params.size());
    for (const auto& [name, param] : params)
      EXPECT_EQ(testing::max_abs_diff(a.model->find_parameter(name)->value, param->value), 0.0) << name;
  }
  // final_layer.adaLN_modulation.1 is (shift, scale): its first half is norm_out.linear's second.
  const auto a = load_transformer(fixture("dev_original_layout") / "transformer", {});
  const SafetensorsFile file = SafetensorsFile::open(fixture("dev_original_layout") / "transformer/flux1.safetensors");
  const Tensor modulation = file.tensor("final_layer.adaLN_modulation.1.bias");
  const int64_t d = modulation.size(0) / 2;
  EXPECT_EQ(testing::max_abs_diff(a.model->find_parameter("norm_out.linear.bias")->value.narrow(0, d, d),
                                  modulation.narrow(0, 0, d)), 0.0);
}

}  // namespace
}  // namespace fastdit
