// Every Flux.1 parity case (made by tools/reference/make_cases.py with specs/flux.py from the
// official diffusers model) through the production loader on the CPU, both checkpoint
// layouts, and the activation trace of the fastdit model against the reference tracer's.
#include <gtest/gtest.h>

#include "loader/transformer_loader.h"
#include "parity/parity_case.h"
#include "support/test_support.h"
#include "trace/activation_trace.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path case_dir(const std::string& name) { return testing::source_path("tests/fixtures/flux/" + name); }

class FluxParity : public ::testing::TestWithParam<std::string> {};

TEST_P(FluxParity, Float32OnCpu) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::Float32);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_LE(r.rel_l2, 1e-4);
  EXPECT_EQ(r.model_type, "FluxTransformer2DModel");
}

TEST_P(FluxParity, BFloat16OnCpuWithinTheReferencesOwnBf16Error) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::BFloat16);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_GT(r.rel_l2, 1e-6);  // really ran in bfloat16
}

// One GEMM per double-stream q|k|v and one per single-stream q|k|v|mlp_in, from either layout.
TEST_P(FluxParity, Float32OnCpuWithFusedProjections) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::Float32, true);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_LE(r.rel_l2, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Cases, FluxParity, ::testing::ValuesIn(testing::family_cases("flux")));

TEST(FluxCases, CoverBothVariantsAndBothLayouts) {
  const auto cases = testing::family_cases("flux");
  for (const char* name : {"dev", "schnell_batch2", "dev_original_layout", "schnell_original_layout", "ids_3d"})
    EXPECT_NE(std::find(cases.begin(), cases.end(), name), cases.end()) << name;
  EXPECT_TRUE(fs::exists(case_dir("dev_original_layout") / "transformer/flux1.safetensors"));
}

trace::TraceConfig all_stats_to(const fs::path& out, const std::string& layers) {
  trace::TraceConfig config;
  config.enabled = true;
  config.stats = {trace::Stat::AbsMean, trace::Stat::Sum, trace::Stat::Min, trace::Stat::Max,
                  trace::Stat::Mean,    trace::Stat::Std, trace::Stat::Shape, trace::Stat::DType};
  config.output = out.string();
  config.layers = layers;
  return config;
}

// The spec's TRACE_LAYERS (tools/reference/specs/flux.py).
const char* kTraceLayers =
    R"(^(x_embedder|time_text_embed|context_embedder|pos_embed|)"
    R"(transformer_blocks\.\d+(\.(norm1|norm1_context|attn|ff|ff_context))?|)"
    R"(single_transformer_blocks\.\d+(\.(norm|attn|proj_mlp|proj_out))?|norm_out|proj_out)$)";

TEST(FluxTrace, MatchesTheReferenceTracerRecordForRecord) {
  const fs::path out = testing::temp_dir("flux_trace") / "ours.jsonl";
  auto loaded = load_transformer(case_dir("dev") / "transformer", {});
  auto tracer = std::make_shared<trace::ActivationTrace>(all_stats_to(out, kTraceLayers));
  tracer->attach(*loaded.model);
  loaded.model->forward(read_model_inputs(case_dir("dev") / "inputs.safetensors", *loaded.model, Device::cpu()));
  tracer.reset();
  const auto ours = trace::read_trace(out.string());
  const auto reference = trace::read_trace((case_dir("dev") / "trace.jsonl").string());
  const auto report = trace::diff_traces(ours, reference, {1e-4, 0.0});
  EXPECT_EQ(report.pairs, reference.size());
  EXPECT_EQ(report.only_a, 0u);
  EXPECT_EQ(report.only_b, 0u);
  EXPECT_FALSE(report.first.has_value()) << report.first->a->module << " " << report.first->a->tensor;
  // Both block kinds, the joint table and the single block's (text, image) pair are compared.
  for (const char* module : {"pos_embed", "transformer_blocks.0.attn", "single_transformer_blocks.1"})
    EXPECT_TRUE(std::any_of(ours.begin(), ours.end(), [&](const auto& r) { return r.module == module; })) << module;
}

TEST(FluxTrace, ParityNamesTheBrokenProjection) {
  const fs::path broken = testing::perturbed_case(case_dir("dev"), "single_transformer_blocks.1.proj_out.weight", 5, 0.5f);
  const ParityResult r = run_parity_case(broken, Device::cpu(), DType::Float32);
  EXPECT_FALSE(r.pass) << head_lines(r);
  ASSERT_TRUE(r.first_divergence.has_value()) << r.divergence_report;
  EXPECT_EQ(*r.first_divergence, "single_transformer_blocks.1.proj_out") << r.divergence_report;
}

}  // namespace
}  // namespace fastdit
