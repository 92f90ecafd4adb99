// A benchmark definition (bench/configs/<benchmark_id>.json): what to run, how often, and
// the limits it is held to. Read strictly: an unknown key is an error.
//
//   {
//     "config_schema_version": 1,
//     "benchmark_id": "wan2.1-t2v-1.3b-480p-forward",  // [A-Za-z0-9._-]+, the file's name
//     "workload_id": "wan-t2v-forward", "variant_id": "1.3b-480p",
//     "benchmark_version": 1,      // bump when the recipe changes on purpose
//     "description": "...",        // optional
//     "model": {"model_id": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
//               "config": "<config.json, relative to this file>", "seed": 0},  // random weights
//     "run": {"device": "cuda", "dtype": "bfloat16", "fuse": "auto",
//             "precision": "bf16"},   // optional: "fp8" (FP8 linears, 8-bit attention)
//     "shape": {"batch": 1, "frames": 81, "height": 480, "width": 832, "text_len": 512,
//               "vae_stride": [4, 8, 8]},
//     "steps": 1, "warmups": 2, "iterations": 5,   // an iteration is `steps` forwards
//     "components": false,          // also split one iteration into attention/GEMM/other
//     "regression_thresholds": {"latency_s": {"percent": 8, "absolute": 0.05}},  // optional
//     "thresholds": {"H100": {"max_latency_s": 3, "max_peak_memory_mb": 20000},
//                    "default": {...}}   // per GPU, matched as a substring of the device name
//   }
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "perf/forward_bench.h"
#include "perf/metrics.h"

namespace fastdit::perf {

struct BenchmarkDefinition {
  std::filesystem::path path;
  std::string benchmark_id, workload_id, variant_id, description;
  int64_t benchmark_version = 0;
  std::string model_id;
  std::filesystem::path model_config;  // resolved against the definition's folder
  uint64_t seed = 0;
  std::string device, dtype, fuse;
  std::string precision = "bf16";  // run.precision: bf16 or fp8 (LoadOptions::precision)
  bool cuda_graph = false;  // run.cuda_graph: forwards replayed from a captured CUDA graph
  VideoShape video;
  int steps = 1, warmups = 2, iterations = 5;
  bool components = false;
  ThresholdTable regression_thresholds;        // defaults with this benchmark's overrides
  std::map<std::string, StaticLimits> limits;  // GPU key -> limits; "default" when present

  // The first key (other than "default") found in the device name, else "default",
  // else no limits.
  StaticLimits limits_for(const std::string& device_name) const;
  ForwardBenchSpec forward_bench_spec(bool components) const;
};

// A benchmark definition names its benchmark; a model config names its _class_name.
bool is_benchmark_definition(const nlohmann::json& json);
BenchmarkDefinition read_benchmark_definition(const std::filesystem::path& path);  // a regular file
// The same from the file's text; `path` names it and anchors the model config's path.
BenchmarkDefinition parse_benchmark_definition(std::string_view text, const std::filesystem::path& path);

}  // namespace fastdit::perf
