// Every Wan parity case (made by tools/reference/make_cases.py with specs/wan.py from the official
// diffusers model) through the production loader on the CPU.
#include <gtest/gtest.h>

#include "loader/safetensors.h"
#include "parity/parity_case.h"
#include "support/test_support.h"
#include "trace/activation_trace.h"
#include "loader/transformer_loader.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

class WanParity : public ::testing::TestWithParam<std::string> {};

fs::path case_dir(const std::string& name) { return testing::source_path("tests/fixtures/wan/" + name); }

TEST_P(WanParity, Float32OnCpu) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::Float32);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_LE(r.rel_l2, 1e-4);
}

TEST_P(WanParity, BFloat16OnCpuWithinTheReferencesOwnBf16Error) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::BFloat16);
  EXPECT_TRUE(r.pass) << head_lines(r);
  EXPECT_GT(r.rel_l2, 1e-6);  // really ran in bfloat16
}

TEST_P(WanParity, Float32OnCpuWithFusedProjections) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::Float32, true);
  EXPECT_TRUE(r.pass) << head_lines(r);
}

INSTANTIATE_TEST_SUITE_P(Cases, WanParity, ::testing::ValuesIn(testing::family_cases("wan")));

// A copy of the t2v case with one weight perturbed.
fs::path broken_case() { return testing::perturbed_case(case_dir("t2v"), "blocks.1.attn1.to_v.weight", 3, 0.5f); }

TEST(WanTrace, MatchesTheReferenceTracerRecordForRecord) {
  const fs::path out = testing::temp_dir("trace") / "ours.jsonl";
  auto loaded = load_transformer(case_dir("t2v") / "transformer", {});
  trace::TraceConfig config;
  config.enabled = true;
  config.stats = {trace::Stat::AbsMean, trace::Stat::Sum, trace::Stat::Min, trace::Stat::Max,
                  trace::Stat::Mean,    trace::Stat::Std, trace::Stat::Shape, trace::Stat::DType};
  config.output = out.string();
  auto tracer = std::make_shared<trace::ActivationTrace>(config);
  EXPECT_GT(tracer->attach(*loaded.model), 60u);
  loaded.model->forward(read_model_inputs(case_dir("t2v") / "inputs.safetensors", *loaded.model, Device::cpu()));
  tracer.reset();
  const auto ours = trace::read_trace(out.string());
  const auto reference = trace::read_trace((case_dir("t2v") / "trace.jsonl").string());
  const auto report = trace::diff_traces(ours, reference, {1e-4, 0.0});
  EXPECT_EQ(report.pairs, reference.size());
  EXPECT_EQ(report.only_a, 0u);
  EXPECT_EQ(report.only_b, 0u);
  EXPECT_FALSE(report.first.has_value()) << report.first->a->module;
  // Every block's output is among the compared records.
  for (const char* block : {"blocks.0", "blocks.1"})
    EXPECT_TRUE(std::any_of(ours.begin(), ours.end(), [&](const auto& r) { return r.module == block; }));
}

TEST(WanTrace, ParityNamesTheBrokenBlock) {
  const ParityResult r = run_parity_case(broken_case(), Device::cpu(), DType::Float32);
  EXPECT_FALSE(r.pass);
  ASSERT_TRUE(r.first_divergence.has_value()) << r.divergence_report;
  EXPECT_EQ(*r.first_divergence, "blocks.1.attn1.to_v") << r.divergence_report;
}

TEST(WanTrace, TraceDiffNamesTheBrokenBlock) {
  // The broken model traced by the env-gated path, then `fastdit trace-diff`'s comparison
  // against the reference tracer's records.
  const fs::path dir = broken_case();
  const fs::path out = testing::temp_dir("broken_trace") / "ours.jsonl";
  ::setenv("FASTDIT_TRACE_ACTIVATIONS", "1", 1);
  ::setenv("FASTDIT_TRACE_STATS", "abs_mean,sum,min,max,mean,std,shape,dtype", 1);
  ::setenv("FASTDIT_TRACE_OUTPUT", out.c_str(), 1);
  {
    auto loaded = load_transformer(dir / "transformer", {});
    auto tracer = trace::attach_from_env(*loaded.model);
    ASSERT_TRUE(tracer);
    loaded.model->forward(read_model_inputs(dir / "inputs.safetensors", *loaded.model, Device::cpu()));
  }
  for (const char* name : {"FASTDIT_TRACE_ACTIVATIONS", "FASTDIT_TRACE_STATS", "FASTDIT_TRACE_OUTPUT"}) ::unsetenv(name);
  const auto ours = trace::read_trace(out.string());
  const auto reference = trace::read_trace((dir / "trace.jsonl").string());
  const auto report = trace::diff_traces(ours, reference, {1e-4, 0.0});
  ASSERT_TRUE(report.first.has_value());
  EXPECT_EQ(report.first->a->module, "blocks.1.attn1.to_v");
  // Everything before the broken projection still matches.
  EXPECT_GT(report.pairs, report.diverged);
}

}  // namespace
}  // namespace fastdit

namespace fastdit {
namespace {

TEST(WanTrace, DumpWritesTheTracedTensors) {
  const fs::path dir = testing::temp_dir("trace_dump");
  auto loaded = load_transformer(case_dir("t2v") / "transformer", {});
  trace::TraceConfig config;
  config.enabled = true;
  config.layers = "^blocks\\.1$";
  config.stats = {trace::Stat::Sum, trace::Stat::Shape};
  config.output = (dir / "trace.jsonl").string();
  config.dump_dir = (dir / "dump").string();
  auto tracer = std::make_shared<trace::ActivationTrace>(config);
  EXPECT_EQ(tracer->attach(*loaded.model), 1u);
  loaded.model->forward(read_model_inputs(case_dir("t2v") / "inputs.safetensors", *loaded.model, Device::cpu()));
  tracer.reset();
  const auto records = trace::read_trace(config.output);
  ASSERT_EQ(records.size(), 1u);
  const SafetensorsFile dump = SafetensorsFile::open(dir / "dump" / "blocks.1.out.step0.call0.safetensors");
  const auto values = dump.tensor("value").to_float_vector();
  double sum = 0;
  for (float v : values) sum += v;
  EXPECT_NEAR(sum, records[0].json["sum"].get<double>(), 1e-9 * std::max(1.0, std::fabs(sum)));
  EXPECT_EQ(dump.tensor("value").shape(), records[0].json["shape"].get<Shape>());
}

TEST(WanTrace, BadEnvironmentIsAnErrorAtStart) {
  ::setenv("FASTDIT_TRACE_ACTIVATIONS", "1", 1);
  ::setenv("FASTDIT_TRACE_LAYERS", "blocks.(", 1);
  EXPECT_THROW(trace::trace_config_from_env(), Error);
  ::setenv("FASTDIT_TRACE_LAYERS", "", 1);
  ::setenv("FASTDIT_TRACE_STATS", "abs_mean,median", 1);
  try {
    trace::trace_config_from_env();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("median"), std::string::npos);
  }
  ::setenv("FASTDIT_TRACE_STATS", "", 1);
  ::setenv("FASTDIT_TRACE_STEPS", "1,x", 1);
  EXPECT_THROW(trace::trace_config_from_env(), Error);
  ::unsetenv("FASTDIT_TRACE_STEPS");
  ::unsetenv("FASTDIT_TRACE_ACTIVATIONS");
  ::setenv("FASTVIDEO_TRACE_ACTIVATIONS", "1", 1);  // the FastVideo name is a fallback
  EXPECT_TRUE(trace::trace_config_from_env().enabled);
  ::setenv("FASTDIT_TRACE_ACTIVATIONS", "0", 1);  // ... that the FastDiT name overrides
  EXPECT_FALSE(trace::trace_config_from_env().enabled);
  ::unsetenv("FASTVIDEO_TRACE_ACTIVATIONS");
  ::unsetenv("FASTDIT_TRACE_ACTIVATIONS");
  ::unsetenv("FASTDIT_TRACE_LAYERS");
  ::unsetenv("FASTDIT_TRACE_STATS");
}

}  // namespace
}  // namespace fastdit
