#include "perf/metrics.h"

#include <array>
#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace fastdit::perf {
namespace {

constexpr std::array<MetricSpec, 6> kGatedMetrics{{
    {"latency_s", "median s per iteration", Better::Lower, {8.0, 0.5}},
    {"throughput_fps", "video frames per s", Better::Higher, {8.0, 0.05}},
    {"peak_memory_mb", "peak device MiB", Better::Lower, {5.0, 256.0}},
    {"attention_s", "attention kernels, s", Better::Lower, {5.0, 0.25}},
    {"gemm_s", "GEMM kernels, s", Better::Lower, {5.0, 0.25}},
    {"other_s", "the rest of an iteration, s", Better::Lower, {5.0, 0.25}},
}};

double non_negative_number(const nlohmann::json& json, const char* key, const std::string& where) {
  const auto it = json.find(key);
  FASTDIT_CHECK(it != json.end() && it->is_number() && it->get<double>() >= 0, where, ": '", key,
                "' must be a non-negative number");
  return it->get<double>();
}

}  // namespace

std::span<const MetricSpec> gated_metrics() { return kGatedMetrics; }

const MetricSpec* find_metric(std::string_view name) {
  for (const MetricSpec& metric : kGatedMetrics)
    if (metric.name == name) return &metric;
  return nullptr;
}

std::string gated_metric_names() {
  std::string names;
  for (const MetricSpec& metric : kGatedMetrics) names += (names.empty() ? "" : ", ") + std::string(metric.name);
  return names;
}

ThresholdTable default_thresholds() {
  ThresholdTable table;
  for (const MetricSpec& metric : kGatedMetrics) table[std::string(metric.name)] = metric.default_threshold;
  return table;
}

ThresholdTable read_thresholds(const nlohmann::json& json, const std::string& source, ThresholdTable base) {
  FASTDIT_CHECK(json.is_object(), source, ": regression thresholds must be an object of metrics");
  for (const auto& [name, value] : json.items()) {
    const std::string where = source + ": " + name;
    FASTDIT_CHECK(find_metric(name), source, ": unknown metric '", name, "' (gated: ", gated_metric_names(), ")");
    FASTDIT_CHECK(value.is_object() && value.size() == 2, where, " must be {\"percent\": p, \"absolute\": a}");
    base[name] = {non_negative_number(value, "percent", where), non_negative_number(value, "absolute", where)};
  }
  return base;
}

nlohmann::json thresholds_json(const ThresholdTable& table) {
  nlohmann::json json = nlohmann::json::object();
  for (const auto& [name, t] : table) json[name] = {{"percent", t.percent}, {"absolute", t.absolute}};
  return json;
}

StaticLimits read_static_limits(const nlohmann::json& json, const std::string& source, std::string gpu_key) {
  FASTDIT_CHECK(json.is_object(), source, ": must be an object");
  StaticLimits limits{std::move(gpu_key), {}, {}};
  for (const auto& [key, value] : json.items()) {
    if (value.is_null()) continue;
    if (key == "max_latency_s") limits.max_latency_s = non_negative_number(json, "max_latency_s", source);
    else if (key == "max_peak_memory_mb") limits.max_peak_memory_mb = non_negative_number(json, "max_peak_memory_mb", source);
    else FASTDIT_FAIL(source, ": unknown limit '", key, "' (known: max_latency_s, max_peak_memory_mb)");
  }
  return limits;
}

nlohmann::json static_limits_json(const StaticLimits& limits) {
  nlohmann::json json{{"gpu_key", limits.gpu_key}};
  json["max_latency_s"] = limits.max_latency_s ? nlohmann::json(*limits.max_latency_s) : nlohmann::json();
  json["max_peak_memory_mb"] = limits.max_peak_memory_mb ? nlohmann::json(*limits.max_peak_memory_mb) : nlohmann::json();
  return json;
}

MetricChange worse_by(const MetricSpec& metric, double current, double baseline) {
  const double delta = metric.better == Better::Lower ? current - baseline : baseline - current;
  return {delta, 100.0 * delta / baseline};
}

}  // namespace fastdit::perf

namespace fastdit::perf {

std::string format_number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, std::fabs(value) >= 1000 ? "%.1f" : "%.4g", value);
  return text;
}

}  // namespace fastdit::perf
