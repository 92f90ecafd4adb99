#include "perf/record.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>
#include <unistd.h>

#include "core/files.h"
#include "perf/environment.h"

namespace fastdit::perf {
namespace {

// A record nests a handful of levels (recipe.model_config holds a model's config); a deeper
// one is refused before anything copies or prints it recursively.
constexpr size_t kMaxRecordDepth = 64;

nlohmann::json read_json_file(const std::filesystem::path& path) {
  const std::string text = read_regular_file(path);
  check_json_depth(text, kMaxRecordDepth, path.string());
  nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  FASTDIT_CHECK(!json.is_discarded(), path.string(), ": not valid JSON");
  return json;
}

nlohmann::json make_recipe(const BenchmarkDefinition& def, const ForwardBenchSpec& spec) {
  const VideoShape& v = spec.video;
  const char* attention = std::getenv("FASTDIT_ATTENTION_BACKEND");
  nlohmann::json recipe = {{"model_id", def.model_id},
          {"model_config", read_json_file(def.model_config)},
          {"weights", "random"},
          {"seed", spec.seed},
          {"device_type", spec.load.device.is_cpu() ? "cpu" : "cuda"},
          {"dtype", def.dtype},
          {"fuse_projections", spec.load.build_options().fuse_projections},
          {"shape", {{"batch", v.batch}, {"frames", v.frames}, {"height", v.height}, {"width", v.width},
                     {"text_len", v.text_len}, {"vae_stride", v.vae_stride}}},
          {"steps", spec.steps},
          {"attention_backend", attention && *attention ? attention : "auto"}};
  if (spec.cuda_graph) recipe["cuda_graph"] = true;  // absent when eager, as recipes before it were
  return recipe;
}

nlohmann::ordered_json nullable(const std::optional<double>& value) {
  return value ? nlohmann::ordered_json(*value) : nlohmann::ordered_json();
}

nlohmann::ordered_json measured_metrics(const ForwardBenchSpec& spec, const ForwardBenchResult* result) {
  std::optional<double> latency, throughput, memory, attention, gemm, other, tflops;
  if (result) {
    latency = result->median_ms() / 1e3;
    throughput = static_cast<double>(spec.video.batch * spec.video.frames) / *latency;
    memory = static_cast<double>(result->peak_memory_bytes) / (1 << 20);
    tflops = result->flops.total() / *latency / 1e12;
    if (result->components) {
      attention = result->components->attention_s;
      gemm = result->components->gemm_s;
      other = result->components->other_s;
    }
  }
  return {{"latency_s", nullable(latency)},   {"throughput_fps", nullable(throughput)},
          {"peak_memory_mb", nullable(memory)}, {"attention_s", nullable(attention)},
          {"gemm_s", nullable(gemm)},         {"other_s", nullable(other)},
          {"tflops", nullable(tflops)}};
}

nlohmann::ordered_json run_details(const ForwardBenchSpec& spec, const RunContext& context,
                                   const ForwardBenchResult* result) {
  nlohmann::ordered_json run{{"device", spec.load.device.str()}, {"device_name", context.device_name},
                             {"steps", spec.steps}, {"warmups", spec.warmups}, {"iterations", spec.iterations}};
  if (!result) return run;
  std::vector<double> times_s;
  for (double ms : result->times_ms) times_s.push_back(ms / 1e3);
  run["times_s"] = times_s;
  run["mean_s"] = std::accumulate(times_s.begin(), times_s.end(), 0.0) / static_cast<double>(times_s.size());
  run["min_s"] = result->min_ms() / 1e3;
  run["load_s"] = result->load_ms / 1e3;
  run["flops_per_iteration"] = {{"linear", result->flops.linear}, {"attention", result->flops.attention}};
  run["latent"] = {result->latent.frames, result->latent.height, result->latent.width};
  run["trace_enabled"] = result->trace_enabled;
  run["component_method"] = result->components
                                ? nlohmann::ordered_json("op-layer kernel wall time, device synchronized around each kernel, one extra iteration")
                                : nlohmann::ordered_json();
  return run;
}

// Field readers that name the record and the field on a bad value.
const nlohmann::ordered_json& field(const nlohmann::ordered_json& json, const char* key, const std::string& source) {
  const auto it = json.find(key);
  FASTDIT_CHECK(it != json.end(), source, ": record has no '", key, "'");
  return *it;
}

std::string string_field(const nlohmann::ordered_json& json, const char* key, const std::string& source) {
  const auto& value = field(json, key, source);
  FASTDIT_CHECK(value.is_string(), source, ": record field '", key, "' must be a string");
  return value.get<std::string>();
}

bool bool_field(const nlohmann::ordered_json& json, const char* key, const std::string& source) {
  const auto& value = field(json, key, source);
  FASTDIT_CHECK(value.is_boolean(), source, ": record field '", key, "' must be true or false");
  return value.get<bool>();
}

std::map<std::string, double> read_metrics(const nlohmann::ordered_json& json, const std::string& source) {
  const auto& metrics = field(json, "metrics", source);
  FASTDIT_CHECK(metrics.is_object(), source, ": record field 'metrics' must be an object");
  std::map<std::string, double> values;
  for (const MetricSpec& metric : gated_metrics()) {
    const auto it = metrics.find(std::string(metric.name));
    if (it == metrics.end() || it->is_null()) continue;
    FASTDIT_CHECK(it->is_number(), source, ": metric '", metric.name, "' must be a number or null");
    const double value = it->get<double>();
    // A time or a rate of a run that happened is positive; memory and component times may
    // be zero (nothing allocated on the device, no attention in the model).
    const bool must_be_positive = metric.name == "latency_s" || metric.name == "throughput_fps";
    FASTDIT_CHECK(std::isfinite(value) && (must_be_positive ? value > 0 : value >= 0), source, ": metric '",
                  metric.name, "' is ", it->dump(), ", not a ", must_be_positive ? "positive" : "non-negative",
                  " finite number");
    values[std::string(metric.name)] = value;
  }
  const auto tflops = metrics.find("tflops");
  FASTDIT_CHECK(tflops == metrics.end() || tflops->is_null() ||
                    (tflops->is_number() && std::isfinite(tflops->get<double>()) && tflops->get<double>() >= 0),
                source, ": metric 'tflops' must be a non-negative finite number or null");
  return values;
}

StaticLimits read_record_limits(const nlohmann::ordered_json& json, const std::string& source) {
  nlohmann::json limits = nlohmann::json(field(json, "static_limits", source));
  FASTDIT_CHECK(limits.is_object() && limits.contains("gpu_key") && limits["gpu_key"].is_string(), source,
                ": record field 'static_limits' must be an object with a gpu_key");
  const std::string key = limits["gpu_key"];
  limits.erase("gpu_key");
  return read_static_limits(limits, source + ": static_limits", key);
}

}  // namespace

RunContext describe_run(const BenchmarkDefinition& def, const ForwardBenchSpec& spec) {
  RunContext context;
  const Device device = spec.load.device;
  context.recipe = make_recipe(def, spec);
  context.recipe_fingerprint = fingerprint_id("rcp", context.recipe);
  context.hardware = hardware_profile(device);
  context.hardware_id = fingerprint_id("hw", context.hardware);
  context.software = software_profile(device);
  context.software_id = fingerprint_id("sw", context.software);
  context.device_name = describe_device(device);
  context.gpu_type = gpu_type(device, context.device_name);
  context.commit_sha = source_commit(def.path.parent_path());
  context.timestamp = utc_timestamp();
  return context;
}

nlohmann::ordered_json make_record(const BenchmarkDefinition& def, const ForwardBenchSpec& spec,
                                   const RunContext& context, const ForwardBenchResult* result,
                                   const std::string& error) {
  nlohmann::ordered_json record{{"result_schema_version", 1},
                                {"record_id", ""},  // filled below, from everything measured
                                {"model_id", def.model_id},
                                {"benchmark_id", def.benchmark_id},
                                {"workload_id", def.workload_id},
                                {"variant_id", def.variant_id},
                                {"benchmark_version", def.benchmark_version},
                                {"gpu_type", context.gpu_type},
                                {"commit_sha", context.commit_sha},
                                {"timestamp", context.timestamp},
                                {"success", result != nullptr},
                                {"error", result ? nlohmann::ordered_json() : nlohmann::ordered_json(error)}};
  record["metrics"] = measured_metrics(spec, result);
  record["regression_thresholds"] = thresholds_json(def.regression_thresholds);
  record["static_limits"] = static_limits_json(def.limits_for(context.device_name));
  record["run"] = run_details(spec, context, result);
  record["recipe"] = context.recipe;
  record["recipe_fingerprint"] = context.recipe_fingerprint;
  record["hardware_profile"] = context.hardware;
  record["hardware_profile_id"] = context.hardware_id;
  record["software_profile"] = context.software;
  record["software_profile_id"] = context.software_id;
  record["record_id"] = fingerprint_id("rec", nlohmann::json(record));
  record["comparison_status"] = nullptr;
  record["baseline_eligible"] = false;
  record["reseed"] = nullptr;
  return record;
}

std::optional<double> PerfRecord::metric(const std::string& name) const {
  const auto it = metrics.find(name);
  return it == metrics.end() ? std::nullopt : std::optional<double>(it->second);
}

bool PerfRecord::same_cohort(const PerfRecord& other) const {
  return benchmark_id == other.benchmark_id && benchmark_version == other.benchmark_version &&
         recipe_fingerprint == other.recipe_fingerprint && hardware_profile_id == other.hardware_profile_id &&
         software_profile_id == other.software_profile_id;
}

PerfRecord parse_record(nlohmann::ordered_json json, std::string source) {
  FASTDIT_CHECK(json.is_object(), source, ": a record is a JSON object");
  const auto& version = field(json, "result_schema_version", source);
  FASTDIT_CHECK(version == 1, source, ": result_schema_version must be 1 (a normalized record from "
                "`fastdit bench --config <benchmark definition>`)");
  PerfRecord r;
  r.record_id = string_field(json, "record_id", source);
  r.model_id = string_field(json, "model_id", source);
  r.benchmark_id = string_field(json, "benchmark_id", source);
  const auto& benchmark_version = field(json, "benchmark_version", source);
  FASTDIT_CHECK(benchmark_version.is_number_integer() && benchmark_version.get<int64_t>() >= 1, source,
                ": benchmark_version must be a positive integer");
  r.benchmark_version = benchmark_version.get<int64_t>();
  r.gpu_type = string_field(json, "gpu_type", source);
  r.commit_sha = string_field(json, "commit_sha", source);
  r.timestamp = string_field(json, "timestamp", source);
  r.recipe_fingerprint = string_field(json, "recipe_fingerprint", source);
  r.hardware_profile_id = string_field(json, "hardware_profile_id", source);
  r.software_profile_id = string_field(json, "software_profile_id", source);
  r.success = bool_field(json, "success", source);
  r.metrics = read_metrics(json, source);
  FASTDIT_CHECK(!r.success || r.metrics.count("latency_s"), source,
                ": a successful run's record needs metrics.latency_s");
  r.thresholds = read_thresholds(nlohmann::json(field(json, "regression_thresholds", source)),
                                 source + ": regression_thresholds", default_thresholds());
  r.limits = read_record_limits(json, source);
  const auto& status = field(json, "comparison_status", source);
  FASTDIT_CHECK(status.is_null() || status.is_string(), source, ": comparison_status must be a string or null");
  r.comparison_status = status.is_null() ? "" : status.get<std::string>();
  r.baseline_eligible = bool_field(json, "baseline_eligible", source);
  r.reseeded = !field(json, "reseed", source).is_null();
  r.json = std::move(json);
  r.source = std::move(source);
  return r;
}

PerfRecord parse_record_text(std::string_view text, std::string source) {
  check_json_depth(text, kMaxRecordDepth, source);
  nlohmann::ordered_json json = nlohmann::ordered_json::parse(text, nullptr, false);
  FASTDIT_CHECK(!json.is_discarded(), source, ": not valid JSON");
  return parse_record(std::move(json), std::move(source));
}

PerfRecord read_record_file(const std::filesystem::path& path) {
  return parse_record_text(read_regular_file(path), path.string());
}

}  // namespace fastdit::perf
