// Every SD3 / SD3.5 parity case (made by tools/reference/make_cases.py with specs/sd3.py from the official
// diffusers model) through the production loader on the CPU, and the activation trace of
// the fastdit model against the reference tracer's.
#include <gtest/gtest.h>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "parity/parity_case.h"
#include "support/test_support.h"
#include "trace/activation_trace.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path case_dir(const std::string& name) { return testing::source_path("tests/fixtures/sd3/" + name); }

class SD3Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(SD3Parity, Float32OnCpu) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::Float32);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_LE(r.rel_l2, 1e-4);
  EXPECT_EQ(r.model_type, "SD3Transformer2DModel");
}

TEST_P(SD3Parity, BFloat16OnCpuWithinTheReferencesOwnBf16Error) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::BFloat16);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_GT(r.rel_l2, 1e-6);  // really ran in bfloat16
}

TEST_P(SD3Parity, Float32OnCpuWithFusedProjections) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::Float32, true);
  EXPECT_TRUE(r.pass) << head_lines(r);
}

INSTANTIATE_TEST_SUITE_P(Cases, SD3Parity, ::testing::ValuesIn(testing::family_cases("sd3")));

trace::TraceConfig all_stats_to(const fs::path& out) {
  trace::TraceConfig config;
  config.enabled = true;
  config.stats = {trace::Stat::AbsMean, trace::Stat::Sum, trace::Stat::Min, trace::Stat::Max,
                  trace::Stat::Mean,    trace::Stat::Std, trace::Stat::Shape, trace::Stat::DType};
  config.output = out.string();
  return config;
}

TEST(SD3Trace, MatchesTheReferenceTracerRecordForRecord) {
  const fs::path out = testing::temp_dir("sd3_trace") / "ours.jsonl";
  auto loaded = load_transformer(case_dir("sd35_medium") / "transformer", {});
  auto tracer = std::make_shared<trace::ActivationTrace>(all_stats_to(out));
  tracer->attach(*loaded.model);
  loaded.model->forward(read_model_inputs(case_dir("sd35_medium") / "inputs.safetensors", *loaded.model, Device::cpu()));
  tracer.reset();
  const auto ours = trace::read_trace(out.string());
  const auto reference = trace::read_trace((case_dir("sd35_medium") / "trace.jsonl").string());
  const auto report = trace::diff_traces(ours, reference, {1e-4, 0.0});
  EXPECT_EQ(report.pairs, reference.size());
  EXPECT_EQ(report.only_a, 0u);
  EXPECT_EQ(report.only_b, 0u);
  EXPECT_FALSE(report.first.has_value()) << report.first->a->module << " " << report.first->a->tensor;
  // The dual-attention block's second attention and the last block's context-only norm
  // are among the compared records.
  for (const char* module : {"transformer_blocks.0.attn2", "transformer_blocks.2.norm1_context"})
    EXPECT_TRUE(std::any_of(ours.begin(), ours.end(), [&](const auto& r) { return r.module == module; })) << module;
}

// A copy of the sd35_medium case with one weight perturbed.
fs::path broken_case() { return testing::perturbed_case(case_dir("sd35_medium"), "transformer_blocks.1.attn.add_v_proj.weight", 5, 0.5f); }

TEST(SD3Trace, ParityNamesTheBrokenProjection) {
  const ParityResult r = run_parity_case(broken_case(), Device::cpu(), DType::Float32);
  EXPECT_FALSE(r.pass);
  ASSERT_TRUE(r.first_divergence.has_value()) << r.divergence_report;
  EXPECT_EQ(*r.first_divergence, "transformer_blocks.1.attn.add_v_proj") << r.divergence_report;
}

}  // namespace
}  // namespace fastdit
