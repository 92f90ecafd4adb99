// The rolling-baseline gate of `fastdit perf check`: a record against the median of the
// last `window` eligible records of its exact cohort, plus its static per-GPU limits.
//
//   RUN_FAILED          the run itself failed (success = false)
//   REGRESSION          a static limit is breached, or a gated metric is worse than the
//                       baseline median by more than both its percent and its absolute
//                       threshold
//   RECIPE_MISMATCH     the cohort has no eligible records, but the same benchmark
//                       version is trusted under another recipe: the definition changed
//                       without a benchmark_version bump
//   CALIBRATION_NEEDED  fewer than `min_records` eligible records: nothing to compare
//                       with yet (`perf reseed` seeds a cohort)
//   PASS                everything else
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "perf/baseline_store.h"

namespace fastdit::perf {

enum class CheckStatus { Pass, Regression, CalibrationNeeded, RecipeMismatch, RunFailed };
const char* status_name(CheckStatus status);  // "PASS", "REGRESSION", …
bool status_fails(CheckStatus status);        // what makes `perf check` exit 1

struct BaselinePolicy {
  int window = 5;       // the median is over the last `window` eligible records
  int min_records = 3;  // fewer eligible records than this: CALIBRATION_NEEDED
};

// The newest `window` eligible records of a history (oldest first).
std::vector<const PerfRecord*> baseline_window(const std::vector<PerfRecord>& history, int window);
// Per gated metric, the median of the records that have it.
std::map<std::string, double> metric_medians(const std::vector<const PerfRecord*>& records);

struct MetricVerdict {
  std::string metric;
  std::optional<double> current, baseline;
  Threshold threshold;
  MetricChange change;         // meaningful when both values are there
  bool compared = false;       // both values there and the baseline positive
  bool regressed = false;
};

struct CheckResult {
  CheckStatus status = CheckStatus::Pass;
  std::string reason;
  std::filesystem::path cohort_file;
  int eligible_records = 0;  // in the cohort
  int baseline_records = 0;  // of them, in the median
  std::vector<MetricVerdict> metrics;
  std::vector<std::string> static_breaches;
};

CheckResult check_record(const PerfRecord& record, const BaselineStore& store, const BaselinePolicy& policy);
// The table `perf check` prints.
std::string format_check(const PerfRecord& record, const CheckResult& result);

}  // namespace fastdit::perf
