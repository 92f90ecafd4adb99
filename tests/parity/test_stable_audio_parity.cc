// Every Stable Audio parity case under tests/fixtures/stable_audio (made by
// tools/reference/make_cases.py with specs/stable_audio.py from the official diffusers
// model) through the production loader on the CPU, and the activation trace of the fastdit
// model against the reference tracer's.
#include <gtest/gtest.h>

#include "loader/transformer_loader.h"
#include "parity/parity_case.h"
#include "support/test_support.h"
#include "trace/activation_trace.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path fixtures() { return testing::source_path("tests/fixtures/stable_audio"); }

TEST(StableAudioCases, AreAllDiscovered) {
  const auto names = testing::family_cases("stable_audio");
  for (const char* expected : {"base", "base_original_layout", "gqa4_odd", "long", "masks", "timestep_per_item"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
}

class StableAudioParity : public ::testing::TestWithParam<std::string> {};

TEST_P(StableAudioParity, Float32OnCpu) {
  const ParityResult r = run_parity_case(fixtures() / GetParam(), Device::cpu(), DType::Float32);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_LE(r.rel_l2, 1e-4);
  EXPECT_EQ(r.model_type, "StableAudioDiTModel");
}

TEST_P(StableAudioParity, BFloat16OnCpuWithinTheReferencesOwnBf16Error) {
  const ParityResult r = run_parity_case(fixtures() / GetParam(), Device::cpu(), DType::BFloat16);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_GT(r.rel_l2, 1e-6);  // really ran in bfloat16
}

TEST_P(StableAudioParity, Float32OnCpuWithFusedProjections) {
  const ParityResult r = run_parity_case(fixtures() / GetParam(), Device::cpu(), DType::Float32, true);
  EXPECT_TRUE(r.pass) << head_lines(r);
}

INSTANTIATE_TEST_SUITE_P(Cases, StableAudioParity, ::testing::ValuesIn(testing::family_cases("stable_audio")));

TEST(StableAudioTrace, MatchesTheReferenceTracerRecordForRecord) {
  const fs::path out = testing::temp_dir("stable_audio_trace") / "ours.jsonl";
  const fs::path case_dir = fixtures() / "base";
  auto loaded = load_transformer(case_dir / "transformer", {});
  trace::TraceConfig config;
  config.enabled = true;
  // The modules the reference trace holds (specs/stable_audio.py's TRACE_LAYERS).
  config.layers = R"(^(time_proj|timestep_proj|global_proj|cross_attention_proj|preprocess_conv|proj_in|)"
                  R"(transformer_blocks\.\d+(\.(attn1|attn2|ff))?|proj_out|postprocess_conv)$)";
  config.stats = {trace::Stat::AbsMean, trace::Stat::Sum, trace::Stat::Min, trace::Stat::Max,
                  trace::Stat::Mean,    trace::Stat::Std, trace::Stat::Shape, trace::Stat::DType};
  config.output = out.string();
  auto tracer = std::make_shared<trace::ActivationTrace>(config);
  tracer->attach(*loaded.model);
  loaded.model->forward(read_model_inputs(case_dir / "inputs.safetensors", *loaded.model, Device::cpu()));
  tracer.reset();
  const auto ours = trace::read_trace(out.string());
  const auto reference = trace::read_trace((case_dir / "trace.jsonl").string());
  const auto report = trace::diff_traces(ours, reference, {1e-4, 0.0});
  EXPECT_EQ(report.pairs, reference.size());
  EXPECT_EQ(report.only_a, 0u);
  EXPECT_EQ(report.only_b, 0u);
  EXPECT_FALSE(report.first.has_value()) << report.first->a->module << " " << report.first->a->tensor;
}

}  // namespace
}  // namespace fastdit
