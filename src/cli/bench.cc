// fastdit bench: times full forwards of a model (its checkpoint, or random weights from
// a config) on synthetic inputs of a video size; prints median ms, TFLOP/s and peak
// memory, and writes a JSON record.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "cli/common.h"
#include "ops/ops.h"

#ifndef FASTDIT_GIT_COMMIT
#define FASTDIT_GIT_COMMIT "unknown"
#endif

namespace fastdit::cli {

namespace {

struct BenchArgs {
  std::string model;
  std::string config;
  bool random_weights = false;
  int64_t frames = 81, height = 480, width = 832, text_len = 512, batch = 1;
  std::vector<int64_t> vae_stride{4, 8, 8};
  int warmup = 2, iters = 5;
  uint64_t seed = 0;
  std::string json = "bench_record.json";
  RunOptions run{"cuda", "bfloat16"};
};

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string utc_timestamp() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

void run_bench(const BenchArgs& a) {
  FASTDIT_CHECK(a.model.empty() != a.config.empty(), "bench: give a model directory or --config (not both)");
  FASTDIT_CHECK(a.config.empty() || a.random_weights, "bench: --config needs --random-weights (no checkpoint)");
  FASTDIT_CHECK(a.vae_stride.size() == 3 && a.frames > 0 && a.height > 0 && a.width > 0 && a.iters > 0,
                "bench: frames/height/width/iters must be positive and --vae-stride has 3 entries");
  const LoadOptions options = a.run.load_options(true);
  const double load_start = now_ms();
  PreparedModel prepared;
  if (a.config.empty()) {
    prepared = prepare_model(a.model, options);
  } else {
    trace::trace_config_from_env();
    prepared.loaded.model = build_transformer(a.config, options.build_options());
    randomize_parameters(*prepared.loaded.model, options, a.seed);
    prepared.trace = trace::attach_from_env(*prepared.loaded.model);
  }
  const double load_ms = now_ms() - load_start;
  DiTModel& model = prepared.model();
  const ExampleShape shape{a.batch, (a.frames - 1) / a.vae_stride[0] + 1, a.height / a.vae_stride[1],
                           a.width / a.vae_stride[2], a.text_len};
  TensorMap inputs = model.example_inputs(shape, a.seed + 1);
  for (auto& [name, tensor] : inputs) tensor = tensor.to(options.device);

  auto forward = [&] {
    const TensorMap out = model.forward(inputs);
    synchronize(options.device);
    return out;
  };
  reset_peak_memory(options.device);
  ops::start_flop_count();
  forward();
  const ops::FlopCount flops = ops::stop_flop_count();
  for (int i = 1; i < a.warmup; ++i) forward();
  std::vector<double> times;
  for (int i = 0; i < a.iters; ++i) {
    const double start = now_ms();
    forward();
    times.push_back(now_ms() - start);
    std::cerr << "iteration " << i + 1 << "/" << a.iters << ": " << std::fixed << std::setprecision(1)
              << times.back() << " ms\n";
  }
  const MemoryStats memory = memory_stats(options.device);
  const double median_ms = median(times);
  const double tflops = flops.total() / (median_ms * 1e-3) / 1e12;
  const char* commit = std::getenv("FASTDIT_COMMIT");

  nlohmann::ordered_json record;
  record["benchmark"] = "forward";
  record["model"] = model.type_name();
  record["source"] = a.model.empty() ? a.config : a.model;
  record["random_weights"] = !a.config.empty();
  record["device"] = options.device.str();
  record["device_name"] = describe_device(options.device);
  record["dtype"] = dtype_name(options.dtype);
  record["shape"] = {{"batch", a.batch}, {"frames", a.frames}, {"height", a.height}, {"width", a.width},
                     {"latent", {shape.frames, shape.height, shape.width}}, {"text_len", a.text_len}};
  record["trace_enabled"] = prepared.trace != nullptr;
  record["warmup"] = a.warmup;
  record["iters"] = a.iters;
  record["times_ms"] = times;
  record["median_ms"] = median_ms;
  record["min_ms"] = *std::min_element(times.begin(), times.end());
  record["flops"] = {{"linear", flops.linear}, {"attention", flops.attention}, {"total", flops.total()}};
  record["tflops"] = tflops;
  record["peak_memory_bytes"] = memory.peak;
  record["load_ms"] = load_ms;
  record["commit"] = commit ? commit : FASTDIT_GIT_COMMIT;
  record["timestamp"] = utc_timestamp();
  std::ofstream(a.json) << record.dump(2) << "\n";

  std::cout << std::fixed << std::setprecision(2) << model.type_name() << " on " << record["device_name"].get<std::string>()
            << " (" << dtype_name(options.dtype) << "), latent " << shape.frames << "x" << shape.height << "x"
            << shape.width << ", batch " << a.batch << "\n"
            << "median " << median_ms << " ms  min " << record["min_ms"].get<double>() << " ms  over " << a.iters
            << " iters\n"
            << "throughput " << tflops << " TFLOP/s (" << flops.total() / 1e12 << " TFLOP per forward)\n"
            << "peak memory " << static_cast<double>(memory.peak) / (1 << 20) << " MiB\n"
            << "record " << a.json << "\n";
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "time full forwards on synthetic inputs");
  cmd->add_option("model", a->model, "model or transformer directory (its checkpoint is loaded)");
  cmd->add_option("--config", a->config, "config.json or model dir to build without a checkpoint");
  cmd->add_flag("--random-weights", a->random_weights, "seeded random weights (with --config)");
  cmd->add_option("--frames", a->frames, "video frames (pixels)")->capture_default_str();
  cmd->add_option("--height", a->height, "height (pixels)")->capture_default_str();
  cmd->add_option("--width", a->width, "width (pixels)")->capture_default_str();
  cmd->add_option("--text-len", a->text_len, "text tokens")->capture_default_str();
  cmd->add_option("--batch", a->batch, "batch size")->capture_default_str();
  cmd->add_option("--vae-stride", a->vae_stride, "VAE compression t h w")->delimiter(',')->capture_default_str();
  cmd->add_option("--warmup", a->warmup, "untimed forwards (the first also counts FLOPs)")->capture_default_str();
  cmd->add_option("--iters", a->iters, "timed forwards")->capture_default_str();
  cmd->add_option("--seed", a->seed, "seed for weights and inputs")->capture_default_str();
  cmd->add_option("--json", a->json, "where to write the JSON record")->capture_default_str();
  add_run_options(*cmd, a->run);
  cmd->callback([a] { run_bench(*a); });
}

}  // namespace fastdit::cli
