#include "perf/forward_bench.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <optional>

#include "models/captured_forward.h"
#include "trace/activation_trace.h"

namespace fastdit::perf {
namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct BenchModel {
  LoadedTransformer loaded;
  std::shared_ptr<trace::ActivationTrace> trace;  // when the environment asks for one
};

BenchModel load_bench_model(const ForwardBenchSpec& spec) {
  trace::trace_config_from_env();  // a bad trace setting fails before the (slow) load
  BenchModel bench;
  if (spec.random_weights) {
    bench.loaded.model = build_transformer(spec.model, spec.load.build_options());
    randomize_parameters(*bench.loaded.model, spec.load, spec.seed);
  } else {
    bench.loaded = load_transformer(spec.model, spec.load);
  }
  bench.trace = trace::attach_from_env(*bench.loaded.model);
  return bench;
}

}  // namespace

ExampleShape VideoShape::latent() const {
  return video_latent_shape(batch, frames, height, width, text_len, vae_stride, "bench");
}

double median(std::vector<double> values) {
  FASTDIT_CHECK(!values.empty(), "median of no values");
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

double ForwardBenchResult::median_ms() const { return median(times_ms); }
double ForwardBenchResult::min_ms() const { return *std::min_element(times_ms.begin(), times_ms.end()); }

ForwardBenchResult run_forward_bench(const ForwardBenchSpec& spec) {
  FASTDIT_CHECK(spec.steps > 0 && spec.iterations > 0 && spec.warmups >= 0,
                "bench: steps and iterations must be positive, warmups not negative");
  FASTDIT_CHECK(!(spec.cuda_graph && spec.components), "bench: --components times kernels one by one, "
                "synchronising after each, which a CUDA graph replay cannot do; drop --components or --cuda-graph");
  ForwardBenchResult result;
  result.latent = spec.video.latent();
  const double load_start = now_ms();
  BenchModel bench = load_bench_model(spec);
  result.load_ms = now_ms() - load_start;
  DiTModel& model = *bench.loaded.model;
  const Device device = spec.load.device;
  TensorMap inputs = model.example_inputs(result.latent, spec.seed + 1);
  for (auto& [name, tensor] : inputs) tensor = tensor.to(device);
  const ArgMap args = model.example_args(result.latent);
  if (const std::string latents = model.io().name_of(InputRole::Latents); inputs.count(latents))
    require_forward_memory(model, inputs.at(latents).shape(), spec.load.dtype, device);

  std::optional<CapturedForward> graph;
  const auto iteration = [&] {
    for (int step = 0; step < spec.steps; ++step) {
      if (graph) graph->forward(inputs, args);
      else model.forward(inputs, args);
      synchronize(device);
    }
  };
  reset_peak_memory(device);
  ops::start_flop_count();
  iteration();
  result.flops = ops::stop_flop_count();
  if (spec.cuda_graph) {
    graph.emplace(model);
    iteration();
  }
  for (int i = 1; i < spec.warmups; ++i) iteration();
  for (int i = 0; i < spec.iterations; ++i) {
    const double start = now_ms();
    iteration();
    result.times_ms.push_back(now_ms() - start);
    std::cerr << "iteration " << i + 1 << "/" << spec.iterations << ": " << std::fixed << std::setprecision(1)
              << result.times_ms.back() << " ms\n";
  }
  result.peak_memory_bytes = memory_stats(device).peak;
  if (spec.components) {
    result.components = time_components(device, iteration);
    std::cerr << "kernels of one synchronised iteration:\n";
    for (const auto& [op, t] : result.components->by_op)
      std::cerr << "  " << std::left << std::setw(22) << op << std::right << std::setw(10) << std::setprecision(2)
                << t.seconds * 1e3 << " ms " << std::setw(6) << t.calls << " calls\n";
  }
  result.model_type = model.type_name();
  result.device_name = describe_device(device);
  result.trace_enabled = bench.trace != nullptr;
  return result;
}

}  // namespace fastdit::perf
