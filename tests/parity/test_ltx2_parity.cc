// Every LTX-2 parity case under tests/fixtures/ltx2 (made by tools/reference/make_cases.py
// with specs/ltx2.py from diffusers' LTX2VideoTransformer3DModel) through the production
// loader on the CPU, both output heads (`sample`, `audio_sample`), float32 (separate and fused
// projections) and bfloat16; and the activation trace of the fastdit model against the
// reference tracer's, block outputs as tuples (out[0] video, out[1] audio).
#include <gtest/gtest.h>

#include "loader/transformer_loader.h"
#include "parity/parity_case.h"
#include "support/test_support.h"
#include "trace/activation_trace.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path fixtures() { return testing::source_path("tests/fixtures/ltx2"); }

TEST(Ltx2Cases, AreAllDiscovered) {
  const auto names = testing::family_cases("ltx2");
  for (const char* expected : {"split_batch2_masks", "interleaved", "per_token_timestep", "ltx23_like", "stg_mixed",
                               "stg_all", "isolate_modalities", "coords_given", "split_original_layout"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
}

class Ltx2Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Ltx2Parity, BothHeadsFloat32OnCpu) {
  const ParityResult r = run_parity_case(fixtures() / GetParam(), Device::cpu(), DType::Float32);
  EXPECT_TRUE(r.pass) << head_lines(r);
  ASSERT_EQ(r.heads.size(), 2u);
  EXPECT_EQ(r.heads[0].name, "sample");
  EXPECT_EQ(r.heads[1].name, "audio_sample");
  EXPECT_LE(r.rel_l2, 1e-4);
  EXPECT_EQ(r.model_type, "LTX2VideoTransformer3DModel");
}

TEST_P(Ltx2Parity, BothHeadsBFloat16OnCpuWithinTheReferencesOwnBf16Error) {
  const ParityResult r = run_parity_case(fixtures() / GetParam(), Device::cpu(), DType::BFloat16);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_GT(r.rel_l2, 1e-6);  // really ran in bfloat16
}

// The fused projections (to_qkv, to_kv: the CUDA default) from both checkpoint layouts.
TEST_P(Ltx2Parity, BothHeadsFloat32OnCpuWithFusedProjections) {
  const ParityResult r = run_parity_case(fixtures() / GetParam(), Device::cpu(), DType::Float32, true);
  EXPECT_TRUE(r.pass) << head_lines(r);
  ASSERT_EQ(r.heads.size(), 2u);
  EXPECT_LE(r.rel_l2, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Cases, Ltx2Parity, ::testing::ValuesIn(testing::family_cases("ltx2")));

TEST(Ltx2Trace, MatchesTheReferenceTracerRecordForRecord) {
  const fs::path out = testing::temp_dir("ltx2_trace") / "ours.jsonl";
  const fs::path case_dir = fixtures() / "split_batch2_masks";
  auto loaded = load_transformer(case_dir / "transformer", {});
  trace::TraceConfig config;
  config.enabled = true;
  // The modules the reference trace holds (specs/ltx2.py's TRACE_LAYERS).
  config.layers = R"(^(proj_in|audio_proj_in|caption_projection|audio_caption_projection|time_embed|audio_time_embed|)"
                  R"(av_cross_attn_\w+|prompt_adaln|audio_prompt_adaln|transformer_blocks\.\d+)"
                  R"((\.(attn1|audio_attn1|attn2|audio_attn2|audio_to_video_attn|video_to_audio_attn|ff|audio_ff))?|)"
                  R"(proj_out|audio_proj_out)$)";
  config.stats = {trace::Stat::AbsMean, trace::Stat::Sum, trace::Stat::Min, trace::Stat::Max,
                  trace::Stat::Mean,    trace::Stat::Std, trace::Stat::Shape, trace::Stat::DType};
  config.output = out.string();
  auto tracer = std::make_shared<trace::ActivationTrace>(config);
  tracer->attach(*loaded.model);
  loaded.model->forward(read_model_inputs(case_dir / "inputs.safetensors", *loaded.model, Device::cpu()),
                        read_args_file(case_dir / "args.json", loaded.model->io()));
  tracer.reset();
  const auto ours = trace::read_trace(out.string());
  const auto reference = trace::read_trace((case_dir / "trace.jsonl").string());
  const auto report = trace::diff_traces(ours, reference, {1e-4, 0.0});
  EXPECT_EQ(report.pairs, reference.size());
  EXPECT_EQ(report.only_a, 0u);
  EXPECT_EQ(report.only_b, 0u);
  EXPECT_FALSE(report.first.has_value()) << report.first->a->module << " " << report.first->a->tensor;
  size_t block_video = 0, block_audio = 0;
  for (const auto& record : reference) {
    block_video += record.module == "transformer_blocks.1" && record.tensor == "out[0]";
    block_audio += record.module == "transformer_blocks.1" && record.tensor == "out[1]";
  }
  EXPECT_EQ(block_video, 1u);
  EXPECT_EQ(block_audio, 1u);
}

}  // namespace
}  // namespace fastdit
