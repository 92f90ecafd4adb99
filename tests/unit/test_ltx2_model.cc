// The native LTX-2 DiT built from the LTX-2 (2.0) and 2.3 configs (no weights) has exactly the
// state-dict names, shapes and load dtypes of the official class (dumps made by
// tools/reference/dump_keys.py); its config is read strictly; the Lightricks single-file
// layout loads through the mapping rules and exports back to itself exactly, to the same
// parameters as the diffusers layout of the same weights; the rotary tables from fractional
// coordinates put each head's frequency slice and the front padding where the reference does.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "nn/rotary.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path fixtures() { return testing::source_path("tests/fixtures/ltx2"); }
fs::path tiny_case() { return fixtures() / "split_batch2_masks"; }
fs::path original_case() { return fixtures() / "split_original_layout"; }

TEST(Ltx2RealConfig, Ltx20ParametersMatchTheReferenceDump) {
  testing::expect_parameters_match_dump(fixtures() / "keys", "LTX-2");
}

TEST(Ltx2RealConfig, Ltx23ParametersMatchTheReferenceDump) {
  testing::expect_parameters_match_dump(fixtures() / "keys", "LTX-2.3");
}

fs::path config_with(const nlohmann::json& changes) {
  std::ifstream in(tiny_case() / "transformer/config.json");
  auto config = nlohmann::json::parse(in);
  config.merge_patch(changes);
  const fs::path dir = testing::temp_dir("ltx2_config");
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

TEST(Ltx2Config, IsReadStrictly) {
  EXPECT_NE(build_error({{"rope_dims", 4}}).find("'rope_dims'"), std::string::npos);
  EXPECT_NE(build_error({{"num_layers", "2"}}).find("num_layers"), std::string::npos);
  EXPECT_NE(build_error({{"rope_type", "spiral"}}).find("rope_type 'spiral'"), std::string::npos);
  EXPECT_NE(build_error({{"qk_norm", "rms_norm"}}).find("qk_norm"), std::string::npos);
  EXPECT_NE(build_error({{"vae_scale_factors", {8, 32}}}).find("vae_scale_factors"), std::string::npos);
  EXPECT_NE(build_error({{"audio_cross_attention_dim", 16}}).find("audio_cross_attention_dim 16"), std::string::npos);
  // A null channel count means the input's, as the constructor says.
  const auto model = build_transformer(config_with({{"audio_out_channels", nullptr}}));
  EXPECT_EQ(model->find_parameter("audio_proj_out.weight")->shape, (Shape{4, 8}));
}

// Every checkpoint tensor exported from a load is the file's tensor, bit for bit.
void expect_exports_exactly(const fs::path& case_dir) {
  const auto loaded = load_transformer(case_dir / "transformer", {});
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(case_dir / "transformer");
  const auto exported = export_checkpoint(loaded);
  ASSERT_EQ(exported.size(), checkpoint.names().size());
  for (const auto& [name, tensor] : exported) {
    const Tensor original = checkpoint.tensor(name);
    EXPECT_EQ(tensor.shape(), original.shape()) << name;
    EXPECT_EQ(testing::max_abs_diff(tensor, original), 0.0) << name;
  }
}

TEST(Ltx2Model, BothLayoutsExportExactly) {
  expect_exports_exactly(tiny_case());
  expect_exports_exactly(original_case());
}

TEST(Ltx2Model, OriginalLayoutLoadsTheDiffusersParameters) {
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(original_case() / "transformer");
  for (const auto& name : checkpoint.names()) EXPECT_TRUE(name.starts_with("model.diffusion_model.")) << name;
  const auto original = load_transformer(original_case() / "transformer", {});
  const auto diffusers = load_transformer(tiny_case() / "transformer", {});
  const auto params = diffusers.model->named_parameters();
  ASSERT_EQ(original.model->named_parameters().size(), params.size());
  for (const auto& [name, param] : params) {
    const nn::Parameter* other = original.model->find_parameter(name);
    ASSERT_NE(other, nullptr) << name;
    EXPECT_EQ(testing::max_abs_diff(other->value, param->value), 0.0) << name;
  }
}

LoadOptions fused_options(DType dtype = DType::Float32) {
  LoadOptions options;
  options.fuse_projections = true;
  options.dtype = dtype;
  return options;
}

// Fused projections (the CUDA default): the self-attentions' q, k, v load into one to_qkv
// (rows q, k, v) and the cross-attentions' k, v into one to_kv, weights and biases, from the
// diffusers and the original layout; each exports back to its own file exactly.
TEST(Ltx2Model, FusedProjectionsLoadTheSeparateRowsAndExportExactly) {
  for (const fs::path& case_dir : {tiny_case(), original_case()}) {
    const auto plain = load_transformer(case_dir / "transformer", {});
    const auto fused = load_transformer(case_dir / "transformer", fused_options());
    EXPECT_EQ(fused.model->named_parameters().size() + 2 * (2 * 2 + 4 * 1) * 2, plain.model->named_parameters().size())
        << "2 blocks x (2 fewer in each of 2 self-attentions, 1 in each of 4 cross-attentions) x weight and bias";
    const auto rows = [&](const std::string& fused_name, const std::vector<std::string>& parts) {
      const Tensor joined = fused.model->find_parameter(fused_name)->value;
      int64_t row = 0;
      for (const std::string& part : parts) {
        EXPECT_EQ(fused.model->find_parameter(part), nullptr) << part;
        const Tensor separate = plain.model->find_parameter(part)->value;
        const int64_t n = separate.size(0);
        EXPECT_EQ(testing::max_abs_diff(joined.narrow(0, row, n), separate), 0.0) << fused_name << " " << part;
        row += n;
      }
      EXPECT_EQ(row, joined.size(0)) << fused_name;
    };
    for (const char* block : {"transformer_blocks.0.", "transformer_blocks.1."})
      for (const char* wb : {"weight", "bias"}) {
        for (const char* self : {"attn1", "audio_attn1"}) {
          const std::string at = std::string(block) + self + ".";
          rows(at + "to_qkv." + wb, {at + "to_q." + wb, at + "to_k." + wb, at + "to_v." + wb});
        }
        for (const char* cross : {"attn2", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn"}) {
          const std::string at = std::string(block) + cross + ".";
          rows(at + "to_kv." + wb, {at + "to_k." + wb, at + "to_v." + wb});
          EXPECT_NE(fused.model->find_parameter(at + "to_q." + wb), nullptr) << at;
        }
      }
    const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(case_dir / "transformer");
    const auto exported = export_checkpoint(fused);
    ASSERT_EQ(exported.size(), checkpoint.names().size());
    for (const auto& [name, tensor] : exported) {
      const Tensor original = checkpoint.tensor(name);
      EXPECT_EQ(tensor.shape(), original.shape()) << name;
      EXPECT_EQ(testing::max_abs_diff(tensor, original), 0.0) << name;
    }
  }
}

// The fused model's forward is the separate-projection model's: every parity case (all the
// attention paths: masks, per-token timesteps, 2.3's gates and prompt modulation, STG with
// and without a mask, isolated modalities, both layouts), both heads, float32 and bfloat16.
// The bound is testing::fused_projection_bound (the CPU GEMM's column results may depend on its
// width by a last-bit rounding). On CUDA, cuBLASLt may pick another algorithm for the wider
// GEMM; the CUDA parity cases (fused and not) hold both to the reference's bounds.
TEST(Ltx2Model, FusedProjectionsAreTheSeparateProjections) {
  for (const std::string& name : testing::family_cases("ltx2")) {
    const fs::path case_dir = fixtures() / name;
    for (DType dtype : {DType::Float32, DType::BFloat16}) {
      LoadOptions separate;
      separate.dtype = dtype;
      const auto plain = load_transformer(case_dir / "transformer", separate);
      const auto fused = load_transformer(case_dir / "transformer", fused_options(dtype));
      const TensorMap inputs = read_model_inputs(case_dir / "inputs.safetensors", *plain.model, Device::cpu());
      const ArgMap args =
          fs::exists(case_dir / "args.json") ? read_args_file(case_dir / "args.json", plain.model->io()) : ArgMap{};
      const TensorMap a = plain.model->forward(inputs, args), b = fused.model->forward(inputs, args);
      for (const char* head : {"sample", "audio_sample"})
        EXPECT_LE(testing::rel_l2(b.at(head), a.at(head)), testing::fused_projection_bound(dtype))
            << name << " " << dtype_name(dtype) << " " << head;
    }
  }
}

TEST(Ltx2Rotary, SplitTablesGiveEachHeadItsSliceAfterTheFrontPadding) {
  // dim 16 over 3 axes: 2 frequencies per axis, 6 angles, 2 of the 8 padded at the front.
  const Tensor coords = Tensor::from_vector<float>({10.0f, 512.0f, 1024.0f}, {1, 3, 1});
  const float max_pos[] = {20.0f, 2048.0f, 2048.0f};
  const auto table = nn::rotary_coordinate_table(coords, max_pos, 16, 2, 10000.0, ops::RopeStyle::SplitHalf,
                                                 nn::AnglePrecision::Float64);
  ASSERT_EQ(table.cos.shape(), (Shape{1, 1, 2, 8}));
  const auto cos = table.cos.to_float_vector(), sin = table.sin.to_float_vector();
  const double freqs[] = {M_PI / 2, 10000.0 * M_PI / 2};
  const double grid[] = {2 * 0.5 - 1, 2 * 0.25 - 1, 2 * 0.5 - 1};
  std::vector<float> angles = {0, 0};  // padding: cos 1, sin 0
  for (double f : freqs)  // float32 products of the float32 frequencies, as the reference
    for (double g : grid) angles.push_back(static_cast<float>(g) * static_cast<float>(f));
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i) {
      const float angle = angles[h * 4 + i];
      for (int half = 0; half < 2; ++half) {
        EXPECT_NEAR(cos[h * 8 + half * 4 + i], std::cos(angle), 1e-6) << h << " " << i;
        EXPECT_NEAR(sin[h * 8 + half * 4 + i], std::sin(angle), 1e-6) << h << " " << i;
      }
    }
}

TEST(Ltx2Rotary, PerHeadTablesRotateEachHeadByItsOwnRows) {
  // ops::rope with a [B, S, H, R] table equals rotating each head with its own [S, R] slice.
  const Tensor x = testing::random_tensor({2, 3, 2, 8}, 1);
  const Tensor cos = testing::random_tensor({1, 3, 2, 8}, 2), sin = testing::random_tensor({1, 3, 2, 8}, 3);
  const Tensor out = ops::rope(x, cos, sin, ops::RopeStyle::SplitHalf);
  for (int64_t h = 0; h < 2; ++h) {
    const Tensor head = ops::rope(x.narrow(2, h, 1).contiguous(), cos.narrow(2, h, 1).contiguous().reshape({3, 8}),
                                  sin.narrow(2, h, 1).contiguous().reshape({3, 8}), ops::RopeStyle::SplitHalf);
    EXPECT_EQ(testing::max_abs_diff(out.narrow(2, h, 1).contiguous(), head), 0.0) << h;
  }
}

}  // namespace
}  // namespace fastdit
