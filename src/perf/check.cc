#include "perf/check.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "perf/forward_bench.h"

namespace fastdit::perf {
namespace {

std::vector<std::string> static_breaches(const PerfRecord& record) {
  std::vector<std::string> breaches;
  const auto over = [&](const char* metric, const std::optional<double>& limit) {
    const std::optional<double> value = record.metric(metric);
    if (!limit || !value || *value <= *limit) return;
    std::ostringstream text;
    text << metric << " " << format_number(*value) << " is over the " << record.limits.gpu_key << " limit "
         << format_number(*limit);
    breaches.push_back(text.str());
  };
  over("latency_s", record.limits.max_latency_s);
  over("peak_memory_mb", record.limits.max_peak_memory_mb);
  return breaches;
}

std::vector<MetricVerdict> compare_metrics(const PerfRecord& record, const std::map<std::string, double>& baseline) {
  std::vector<MetricVerdict> verdicts;
  for (const MetricSpec& metric : gated_metrics()) {
    MetricVerdict v;
    v.metric = metric.name;
    v.current = record.metric(v.metric);
    if (const auto it = baseline.find(v.metric); it != baseline.end()) v.baseline = it->second;
    if (!v.current && !v.baseline) continue;
    v.threshold = record.thresholds.at(v.metric);
    v.compared = v.current && v.baseline && *v.baseline > 0;
    if (v.compared) {
      v.change = worse_by(metric, *v.current, *v.baseline);
      v.regressed = v.change.exceeds(v.threshold);
    }
    verdicts.push_back(v);
  }
  return verdicts;
}

// Another recipe of the same benchmark version that has a trusted baseline.
std::optional<std::string> trusted_other_recipe(const PerfRecord& record, const BaselineStore& store) {
  for (const auto& history : store.benchmark_histories(record.benchmark_id, record.benchmark_version)) {
    const PerfRecord& first = history.front();
    if (first.recipe_fingerprint == record.recipe_fingerprint) continue;
    for (const PerfRecord& r : history)
      if (r.eligible()) return first.recipe_fingerprint;
  }
  return std::nullopt;
}

std::string number(const std::optional<double>& value) { return value ? format_number(*value) : "-"; }

}  // namespace

const char* status_name(CheckStatus status) {
  switch (status) {
    case CheckStatus::Pass: return "PASS";
    case CheckStatus::Regression: return "REGRESSION";
    case CheckStatus::CalibrationNeeded: return "CALIBRATION_NEEDED";
    case CheckStatus::RecipeMismatch: return "RECIPE_MISMATCH";
    case CheckStatus::RunFailed: return "RUN_FAILED";
  }
  return "?";
}

bool status_fails(CheckStatus status) {
  return status == CheckStatus::Regression || status == CheckStatus::RecipeMismatch ||
         status == CheckStatus::RunFailed;
}

std::vector<const PerfRecord*> baseline_window(const std::vector<PerfRecord>& history, int window) {
  std::vector<const PerfRecord*> eligible;
  for (const PerfRecord& r : history)
    if (r.eligible()) eligible.push_back(&r);
  if (static_cast<int>(eligible.size()) > window) eligible.erase(eligible.begin(), eligible.end() - window);
  return eligible;
}

std::map<std::string, double> metric_medians(const std::vector<const PerfRecord*>& records) {
  std::map<std::string, double> medians;
  for (const MetricSpec& metric : gated_metrics()) {
    std::vector<double> values;
    for (const PerfRecord* r : records)
      if (const auto value = r->metric(std::string(metric.name))) values.push_back(*value);
    if (!values.empty()) medians[std::string(metric.name)] = median(values);
  }
  return medians;
}

CheckResult check_record(const PerfRecord& record, const BaselineStore& store, const BaselinePolicy& policy) {
  FASTDIT_CHECK(policy.window >= 1 && policy.min_records >= 1 && policy.min_records <= policy.window,
                "perf check: need 1 <= min records <= window");
  CheckResult result;
  result.cohort_file = store.cohort_file(record);
  const std::vector<PerfRecord> history = store.cohort_history(record);
  for (const PerfRecord& r : history) result.eligible_records += r.eligible();
  const std::vector<const PerfRecord*> window = baseline_window(history, policy.window);
  result.baseline_records = static_cast<int>(window.size());
  const bool calibrated = result.baseline_records >= policy.min_records;
  result.metrics = compare_metrics(record, calibrated ? metric_medians(window) : std::map<std::string, double>{});
  result.static_breaches = static_breaches(record);

  if (!record.success) {
    result.status = CheckStatus::RunFailed;
    const auto error = record.json.find("error");
    result.reason = "the benchmark run failed: " +
                    (error != record.json.end() && error->is_string() ? error->get<std::string>() : "(no error text)");
  } else if (!result.static_breaches.empty()) {
    result.status = CheckStatus::Regression;
    result.reason = result.static_breaches.front();
  } else if (const auto other = result.eligible_records == 0 ? trusted_other_recipe(record, store) : std::nullopt) {
    result.status = CheckStatus::RecipeMismatch;
    result.reason = "benchmark " + record.benchmark_id + " v" + std::to_string(record.benchmark_version) +
                    " has a baseline under recipe " + *other + ", this record ran recipe " +
                    record.recipe_fingerprint + ": bump benchmark_version when the recipe changes";
  } else if (!calibrated) {
    result.status = CheckStatus::CalibrationNeeded;
    result.reason = std::to_string(result.eligible_records) + " eligible baseline record(s), " +
                    std::to_string(policy.min_records) + " needed: seed the cohort with `fastdit perf reseed`";
  } else {
    result.status = CheckStatus::Pass;
    for (const MetricVerdict& v : result.metrics)
      if (v.regressed && result.status == CheckStatus::Pass) {
        result.status = CheckStatus::Regression;
        result.reason = v.metric + " is " + number(v.change.percent) + " % worse than the baseline median";
      }
  }
  return result;
}

std::string format_check(const PerfRecord& record, const CheckResult& result) {
  std::ostringstream out;
  out << "benchmark " << record.benchmark_id << " v" << record.benchmark_version << " on " << record.gpu_type
      << ", commit " << record.commit_sha.substr(0, 12) << ", " << record.timestamp << "\n"
      << "cohort " << result.cohort_file.string() << "\n"
      << "baseline: median of the last " << result.baseline_records << " of " << result.eligible_records
      << " eligible record(s)\n\n";
  char line[160];
  std::snprintf(line, sizeof line, "%-16s %12s %12s %12s %9s %16s  %s\n", "metric", "current", "baseline", "worse by",
                "worse %", "limit (%, abs)", "verdict");
  out << line;
  for (const MetricVerdict& v : result.metrics) {
    const std::string limit = number(v.threshold.percent) + " %, " + number(v.threshold.absolute);
    const char* verdict = !v.compared ? "not compared" : v.regressed ? "REGRESSED" : "ok";
    std::snprintf(line, sizeof line, "%-16s %12s %12s %12s %9s %16s  %s\n", v.metric.c_str(), number(v.current).c_str(),
                  number(v.baseline).c_str(), v.compared ? number(v.change.delta).c_str() : "-",
                  v.compared ? number(v.change.percent).c_str() : "-", limit.c_str(), verdict);
    out << line;
  }
  for (const std::string& breach : result.static_breaches) out << "static limit: " << breach << "\n";
  out << "\nstatus: " << status_name(result.status);
  if (!result.reason.empty()) out << " (" << result.reason << ")";
  out << "\n";
  return out.str();
}

}  // namespace fastdit::perf
