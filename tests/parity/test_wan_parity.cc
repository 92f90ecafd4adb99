// Every Wan parity case (made by tools/reference/make_wan_cases.py from the official
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
  EXPECT_TRUE(r.pass) << "rel_l2 " << r.rel_l2 << " bound " << r.bound;
  EXPECT_LE(r.rel_l2, 1e-4);
}

TEST_P(WanParity, BFloat16OnCpuWithinTheReferencesOwnBf16Error) {
  const ParityResult r = run_parity_case(case_dir(GetParam()), Device::cpu(), DType::BFloat16);
  EXPECT_TRUE(r.pass) << "rel_l2 " << r.rel_l2 << " bound " << r.bound << " (" << r.bound_note << ")";
  EXPECT_GT(r.rel_l2, 1e-6);  // really ran in bfloat16
}

INSTANTIATE_TEST_SUITE_P(Cases, WanParity,
                         ::testing::Values("t2v", "t2v_batch2_sharded", "i2v", "flf2v", "ti2v_per_token",
                                           "t2v_original_layout"));

// A copy of the t2v case with one weight of block 1 perturbed.
fs::path broken_case() {
  const fs::path src = case_dir("t2v");
  const fs::path dir = testing::temp_dir("broken_case");
  fs::create_directories(dir / "transformer");
  for (const char* f : {"inputs.safetensors", "outputs.safetensors", "trace.jsonl", "transformer/config.json"})
    fs::copy_file(src / f, dir / f);
  const SafetensorsFile weights = SafetensorsFile::open(src / "transformer/diffusion_pytorch_model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& name : weights.names()) {
    Tensor t = weights.tensor(name).clone();
    if (name == "blocks.1.attn1.to_v.weight") t.data<float>()[3] += 0.5f;
    tensors.emplace_back(name, t);
  }
  write_safetensors(dir / "transformer/diffusion_pytorch_model.safetensors", tensors);
  return dir;
}

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

}  // namespace
}  // namespace fastdit
