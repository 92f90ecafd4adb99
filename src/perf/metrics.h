// The metrics a benchmark record carries and how each is gated: which direction is
// better, and the (percent, absolute) change that counts as a regression. A change
// regresses only when it exceeds both, so noise on a fast benchmark (small absolute
// change) and drift on a slow one (small percent) both pass. Defaults follow FastVideo's
// metric policy; a benchmark definition overrides them per metric.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace fastdit::perf {

enum class Better { Lower, Higher };

struct Threshold {
  double percent = 0;   // of the baseline
  double absolute = 0;  // in the metric's unit
};
using ThresholdTable = std::map<std::string, Threshold>;  // metric name -> threshold

struct MetricSpec {
  std::string_view name;  // key in a record's "metrics"
  std::string_view meaning;  // short, for chart titles
  Better better;
  Threshold default_threshold;
};

// latency_s, throughput_fps, peak_memory_mb and the components attention_s, gemm_s,
// other_s. tflops rides along in records but is not gated (it is latency restated).
std::span<const MetricSpec> gated_metrics();
const MetricSpec* find_metric(std::string_view name);  // null for an unknown name
std::string gated_metric_names();                      // "latency_s, throughput_fps, …"

ThresholdTable default_thresholds();
// Reads {"metric": {"percent": p, "absolute": a}, ...} over `base`; unknown metrics,
// missing or negative numbers are errors naming `source`.
ThresholdTable read_thresholds(const nlohmann::json& json, const std::string& source, ThresholdTable base);
nlohmann::json thresholds_json(const ThresholdTable& table);

// Hard ceilings for one GPU kind, whatever the history says (FastVideo's static gate).
// Read from {"max_latency_s": x, "max_peak_memory_mb": y}; a null or absent one is no limit.
struct StaticLimits {
  std::string gpu_key = "default";  // the definition's key that matched the device name
  std::optional<double> max_latency_s;
  std::optional<double> max_peak_memory_mb;
};
StaticLimits read_static_limits(const nlohmann::json& json, const std::string& source, std::string gpu_key);
nlohmann::json static_limits_json(const StaticLimits& limits);

// How far `current` is from `baseline` in the worse direction (negative when better).
struct MetricChange {
  double delta = 0;    // in the metric's unit
  double percent = 0;  // of the baseline
  bool exceeds(const Threshold& t) const { return percent > t.percent && delta > t.absolute; }
};
MetricChange worse_by(const MetricSpec& metric, double current, double baseline);  // baseline > 0

// For tables: 4 significant digits, one decimal from 1000 up ("0.9812", "10000.0").
std::string format_number(double value);

}  // namespace fastdit::perf
