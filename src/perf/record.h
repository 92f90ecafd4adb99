// The normalized benchmark record (result_schema_version 1): one JSON object per run,
// the unit the baseline store, `perf check`, `perf reseed` and `perf report` work on.
//
//   result_schema_version, record_id ("rec-…", hash of the record as measured)
//   model_id, benchmark_id, workload_id, variant_id, benchmark_version
//   gpu_type, commit_sha, timestamp, success, error (null on success)
//   metrics {latency_s, throughput_fps, peak_memory_mb, attention_s, gemm_s, other_s,
//            tflops}  (null when not measured)
//   regression_thresholds {metric: {percent, absolute}}, static_limits {gpu_key, max_…}
//   run {device, device_name, steps, warmups, iterations, times_s, mean_s, min_s, load_s,
//        flops_per_iteration, latent, trace_enabled, component_method}
//   recipe + recipe_fingerprint ("rcp-…"), hardware_profile + hardware_profile_id ("hw-…"),
//   software_profile + software_profile_id ("sw-…")
//   comparison_status (null until checked), baseline_eligible, reseed (null, or
//   {reason, timestamp} for a record put into a baseline by `perf reseed`)
//
// The cohort — benchmark_id, benchmark_version, recipe, hardware and software ids — is
// what a record may be compared with.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "perf/definition.h"
#include "perf/forward_bench.h"

namespace fastdit::perf {

// What a run is and where it ran, known before it starts.
struct RunContext {
  nlohmann::json recipe, hardware, software;
  std::string recipe_fingerprint, hardware_id, software_id;
  std::string device_name, gpu_type, commit_sha, timestamp;
};
RunContext describe_run(const BenchmarkDefinition& def, const ForwardBenchSpec& spec);

// A record of a finished run (`result`), or of a failed one (null result, `error`).
nlohmann::ordered_json make_record(const BenchmarkDefinition& def, const ForwardBenchSpec& spec,
                                   const RunContext& context, const ForwardBenchResult* result,
                                   const std::string& error = {});

struct PerfRecord {
  nlohmann::ordered_json json;  // the record as read
  std::string source;           // file (and line) for messages
  std::string record_id, model_id, benchmark_id, gpu_type, commit_sha, timestamp;
  int64_t benchmark_version = 0;
  std::string recipe_fingerprint, hardware_profile_id, software_profile_id;
  bool success = false;
  std::map<std::string, double> metrics;  // gated metrics that have a value
  ThresholdTable thresholds;
  StaticLimits limits;
  std::string comparison_status;  // empty until checked
  bool baseline_eligible = false;
  bool reseeded = false;

  std::optional<double> metric(const std::string& name) const;
  bool same_cohort(const PerfRecord& other) const;
  // A record that may stand in a baseline: a successful run accepted by check or reseed.
  bool eligible() const { return success && baseline_eligible; }
};

// Validates the fields above (missing or mistyped ones are errors naming `source`).
PerfRecord parse_record(nlohmann::ordered_json json, std::string source);
PerfRecord parse_record_text(std::string_view text, std::string source);  // one JSON object
PerfRecord read_record_file(const std::filesystem::path& path);            // a regular file

}  // namespace fastdit::perf
