// The timing loop behind `fastdit bench`: builds a model (its checkpoint, or seeded
// random weights from a config), feeds it synthetic inputs of a video size, and times
// iterations of `steps` forwards with the device synchronized after each forward.
#pragma once

#include <array>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "loader/transformer_loader.h"
#include "ops/ops.h"
#include "perf/component_timer.h"

namespace fastdit::perf {

// A video in pixels; the latent the DiT sees is this divided by the VAE's compression.
struct VideoShape {
  int64_t batch = 1, frames = 81, height = 480, width = 832, text_len = 512;
  std::array<int64_t, 3> vae_stride{4, 8, 8};  // t, h, w
  ExampleShape latent() const;                 // checks every size is positive
};

struct ForwardBenchSpec {
  std::filesystem::path model;  // model dir (checkpoint loaded), or a config with random_weights
  bool random_weights = false;
  LoadOptions load;
  VideoShape video;
  int steps = 1;       // forwards per iteration
  int warmups = 2;     // untimed iterations; the first one also counts FLOPs and always runs
  int iterations = 5;  // timed iterations
  uint64_t seed = 0;   // weights; inputs use seed + 1
  bool components = false;  // one more, synchronized iteration split into components
  // Forwards replayed from one CUDA graph (models/captured_forward.h): the FLOP-counting
  // iteration runs eagerly, the next untimed one captures, the timed ones replay.
  bool cuda_graph = false;
};

struct ForwardBenchResult {
  std::string model_type;   // e.g. WanTransformer3DModel
  std::string device_name;  // describe_device
  ExampleShape latent;
  double load_ms = 0;
  std::vector<double> times_ms;  // one per timed iteration
  ops::FlopCount flops;          // of one iteration
  size_t peak_memory_bytes = 0;  // high-water mark from the first forward on (weights included)
  bool trace_enabled = false;
  std::optional<ComponentTimes> components;  // of one iteration, when asked for

  double median_ms() const;
  double min_ms() const;
};

// Logs "iteration i/n: X ms" on stderr as it goes.
ForwardBenchResult run_forward_bench(const ForwardBenchSpec& spec);

double median(std::vector<double> values);  // of a non-empty list

}  // namespace fastdit::perf
