// The benchmark runner on the tiny Wan (CPU): timings, the component split through the
// op layer's kernel observer, the normalized record and its identity, and the library
// version registry the CUDA backend fills.
#include <gtest/gtest.h>

#include "core/library_versions.h"
#include "ops/ops.h"
#include "perf/component_timer.h"
#include "perf/environment.h"
#include "perf/record.h"
#include "support/test_support.h"

namespace fastdit::perf {
namespace {

BenchmarkDefinition tiny_definition() {
  return read_benchmark_definition(testing::source_path("tests/fixtures/perf/tiny-wan-cpu-forward.json"));
}

TEST(PerfBench, KernelObserverSeesEachKernelByOp) {
  struct Recorder : ops::KernelObserver {
    std::vector<std::string> ops;
    int open = 0;
    void before_kernel(const char* op, Device) override { ops.push_back(op), ++open; }
    void after_kernel(const char*, Device) override { --open; }
  } recorder;
  const Tensor x = testing::random_tensor({2, 4}, 1), w = testing::random_tensor({3, 4}, 2);
  const Tensor q = testing::random_tensor({1, 5, 2, 8}, 3), text = testing::random_tensor({1, 7, 2, 8}, 4);
  ops::set_kernel_observer(&recorder);
  ops::linear(x, w);
  ops::attention(q, q, q);
  ops::attention(q, text, text, {}, 0.0f, "cross_attention");  // named by its caller
  ops::set_kernel_observer(nullptr);
  ops::linear(x, w);  // detached: not seen
  EXPECT_EQ(recorder.ops, (std::vector<std::string>{"linear", "attention", "cross_attention"}));
  EXPECT_EQ(recorder.open, 0);
}

TEST(PerfBench, RunnerTimesItersAndSplitsComponents) {
  const BenchmarkDefinition def = tiny_definition();
  const ForwardBenchSpec spec = def.forward_bench_spec(false);
  ASSERT_TRUE(spec.components);  // the definition asks for them
  const ForwardBenchResult r = run_forward_bench(spec);
  EXPECT_EQ(r.model_type, "WanTransformer3DModel");
  EXPECT_EQ(r.times_ms.size(), 3u);
  EXPECT_EQ(r.latent.frames, 2);
  EXPECT_GT(r.flops.linear, 0);
  EXPECT_GT(r.flops.attention, 0);
  EXPECT_GT(r.peak_memory_bytes, 0u);
  ASSERT_TRUE(r.components.has_value());
  EXPECT_GT(r.components->attention_s, 0);
  EXPECT_GT(r.components->gemm_s, 0);
  // Wan's blocks attend to their own tokens and, through their cross-attention, to the text
  // (8 tokens each here: told apart by name, not by length).
  ASSERT_TRUE(r.components->by_op.contains("attention"));
  ASSERT_TRUE(r.components->by_op.contains("cross_attention"));
  EXPECT_EQ(r.components->by_op.at("attention").calls, r.components->by_op.at("cross_attention").calls);
  EXPECT_NEAR(r.components->attention_s,
              r.components->by_op.at("attention").seconds + r.components->by_op.at("cross_attention").seconds, 1e-12);
  EXPECT_GE(r.components->other_s, 0);
}

// In fp8 the self-attention is ops::attention_8bit and each linear is a per-token quantize
// and an FP8 GEMM: the split counts them as attention and GEMM, not as "other".
TEST(PerfBench, Fp8OpsCountAsAttentionAndGemm) {
  EXPECT_EQ(component_of("attention_8bit"), Component::Attention);
  EXPECT_EQ(component_of("cross_attention"), Component::Attention);
  EXPECT_EQ(component_of("linear_fp8"), Component::Gemm);
  EXPECT_EQ(component_of("quantize_fp8_rows"), Component::Gemm);
  EXPECT_EQ(component_of("rms_norm"), Component::Other);
  const Tensor q = testing::random_tensor({1, 130, 1, 128}, 5).to(DType::BFloat16);
  const Tensor x = testing::random_tensor({4, 32}, 6).to(DType::BFloat16);
  const ops::Fp8Rows w = ops::quantize_fp8_rows(testing::random_tensor({16, 32}, 7).to(DType::BFloat16));
  const ComponentTimes times = time_components(Device::cpu(), [&] {
    ops::attention_8bit(q, q, q);
    ops::linear_fp8(x, w.values, w.scales);
  });
  ASSERT_TRUE(times.by_op.contains("attention_8bit"));
  ASSERT_TRUE(times.by_op.contains("linear_fp8"));
  EXPECT_NEAR(times.attention_s, times.by_op.at("attention_8bit").seconds, 1e-12);
  EXPECT_NEAR(times.gemm_s, times.by_op.at("linear_fp8").seconds, 1e-12);
  EXPECT_GT(times.attention_s, 0);
}

TEST(PerfBench, RecordRoundTripsAndCarriesItsIdentity) {
  const BenchmarkDefinition def = tiny_definition();
  const ForwardBenchSpec spec = def.forward_bench_spec(false);
  const RunContext context = describe_run(def, spec);
  const ForwardBenchResult result = run_forward_bench(spec);
  const PerfRecord r = parse_record(make_record(def, spec, context, &result), "made");
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.benchmark_id, "test-tiny-wan-cpu-forward");
  EXPECT_EQ(r.gpu_type, "cpu");
  EXPECT_EQ(r.record_id.rfind("rec-", 0), 0u);
  EXPECT_EQ(r.recipe_fingerprint, context.recipe_fingerprint);
  EXPECT_DOUBLE_EQ(*r.metric("latency_s"), result.median_ms() / 1e3);
  EXPECT_NEAR(*r.metric("throughput_fps"), 5 / *r.metric("latency_s"), 1e-9);
  EXPECT_TRUE(r.metric("attention_s").has_value());
  EXPECT_EQ(r.limits.max_latency_s, 60);
  EXPECT_FALSE(r.eligible());
  EXPECT_EQ(r.json["recipe"]["model_config"]["num_layers"], 2);

  const PerfRecord failed = parse_record(make_record(def, spec, context, nullptr, "out of memory"), "failed");
  EXPECT_FALSE(failed.success);
  EXPECT_TRUE(failed.metrics.empty());
  EXPECT_EQ(failed.json["error"], "out of memory");
}

TEST(PerfBench, RecipeFollowsTheWorkloadNotTheRun) {
  const BenchmarkDefinition def = tiny_definition();
  const ForwardBenchSpec spec = def.forward_bench_spec(false);
  const RunContext a = describe_run(def, spec), b = describe_run(def, spec);
  EXPECT_EQ(a.recipe_fingerprint, b.recipe_fingerprint);
  EXPECT_EQ(a.hardware_id, b.hardware_id);
  EXPECT_EQ(a.software_id, b.software_id);
  ForwardBenchSpec wider = spec;
  wider.video.width = 64;
  EXPECT_NE(describe_run(def, wider).recipe_fingerprint, a.recipe_fingerprint);
  ForwardBenchSpec more_iterations = spec;
  more_iterations.iterations = 9;
  EXPECT_EQ(describe_run(def, more_iterations).recipe_fingerprint, a.recipe_fingerprint);
}

TEST(PerfBench, SoftwareProfileTakesRegisteredLibraryVersions) {
  const nlohmann::json before = software_profile(Device::cpu());
#ifdef FASTDIT_WITH_CUDA
  EXPECT_NE(before["libraries"]["cudnn"], "none");  // the CUDA backend registers the loaded cuDNN
#else
  EXPECT_EQ(before["libraries"]["cudnn"], "none");  // a CPU-only build registers no CUDA libraries
#endif
  EXPECT_TRUE(before["libraries"].contains("openblas"));
  register_library_version_provider([](LibraryVersions& v) { v["test_library"] = "1.2.3"; });
  const nlohmann::json after = software_profile(Device::cpu());
  EXPECT_EQ(after["libraries"]["test_library"], "1.2.3");
  EXPECT_NE(fingerprint_id("sw", after), fingerprint_id("sw", before));
}

TEST(PerfBench, GpuTypeIsTheModelWord) {
  EXPECT_EQ(gpu_type(Device::cuda(), "NVIDIA H100 80GB HBM3"), "H100");
  EXPECT_EQ(gpu_type(Device::cuda(), "NVIDIA H200"), "H200");
  EXPECT_EQ(gpu_type(Device::cpu(), "AMD EPYC"), "cpu");
}

}  // namespace
}  // namespace fastdit::perf
