#include "perf/record.h"
#include "core/json_depth.h"

#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>
#include <unistd.h>

#include "perf/environment.h"

namespace fastdit::perf {
namespace {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  FASTDIT_CHECK(in.good(), path, ": cannot open");
  nlohmann::json json = nlohmann::json::parse(bounded_json_text(in, path.string()), nullptr, false);
  FASTDIT_CHECK(!json.is_discarded(), path, ": not valid JSON");
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
    values[std::string(metric.name)] = it->get<double>();
  }
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
  FASTDIT_CHECK(benchmark_version.is_number_integer(), source, ": benchmark_version must be an integer");
  r.benchmark_version = benchmark_version.get<int64_t>();
  r.gpu_type = string_field(json, "gpu_type", source);
  r.commit_sha = string_field(json, "commit_sha", source);
  r.timestamp = string_field(json, "timestamp", source);
  r.recipe_fingerprint = string_field(json, "recipe_fingerprint", source);
  r.hardware_profile_id = string_field(json, "hardware_profile_id", source);
  r.software_profile_id = string_field(json, "software_profile_id", source);
  r.success = bool_field(json, "success", source);
  r.metrics = read_metrics(json, source);
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

PerfRecord read_record_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  FASTDIT_CHECK(in.good(), path.string(), ": cannot open record");
  nlohmann::ordered_json json = nlohmann::ordered_json::parse(bounded_json_text(in, path.string()), nullptr, false);
  FASTDIT_CHECK(!json.is_discarded(), path.string(), ": not valid JSON");
  return parse_record(std::move(json), path.string());
}

void write_file_atomically(const std::filesystem::path& path, const std::string& text) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  const std::filesystem::path temporary = path.string() + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    FASTDIT_CHECK(out.good(), temporary, ": cannot write");
    out << text;
    out.close();
    FASTDIT_CHECK(out.good(), temporary, ": write failed");
  }
  std::filesystem::rename(temporary, path);
}

}  // namespace fastdit::perf
