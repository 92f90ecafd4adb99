#include "perf/reseed.h"

#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "core/files.h"
#include "perf/environment.h"

namespace fastdit::perf {
namespace {

template <class Key>
void require_one(const std::vector<PerfRecord>& batch, Key key, const char* what) {
  std::set<std::string> values;
  for (const PerfRecord& r : batch) values.insert(key(r));
  if (values.size() <= 1) return;
  std::string list;
  for (const std::string& v : values) list += (list.empty() ? "" : ", ") + v;
  FASTDIT_FAIL("reseed rejected: the batch mixes ", what, " (", list, ")");
}

std::string cohort_text(const PerfRecord& r) {
  return r.benchmark_id + " v" + std::to_string(r.benchmark_version) + " " + r.recipe_fingerprint + " " +
         r.hardware_profile_id + " " + r.software_profile_id;
}

void require_agreement(const std::vector<PerfRecord>& batch) {
  std::vector<const PerfRecord*> all;
  for (const PerfRecord& r : batch) all.push_back(&r);
  const std::map<std::string, double> medians = metric_medians(all);
  for (const PerfRecord& r : batch) {
    for (const MetricSpec& spec : gated_metrics()) {
      const std::string metric(spec.name);
      const auto median = medians.find(metric);
      const std::optional<double> value = r.metric(metric);
      if (!value || median == medians.end() || median->second <= 0) continue;
      const double batch_median = median->second;
      // Disagreement either way: an outlier fast run is as suspect as a slow one.
      const double delta = std::fabs(*value - batch_median);
      const MetricChange change{delta, 100.0 * delta / batch_median};
      const Threshold& limit = r.thresholds.at(metric);
      FASTDIT_CHECK(!change.exceeds(limit), "reseed rejected: ", r.source, " has ", metric, " ", format_number(*value),
                    ", ", format_number(change.percent), " % from the batch median ", format_number(batch_median),
                    " (limit ", format_number(limit.percent), " % and ", format_number(limit.absolute),
                    "): the batch does not agree with itself");
    }
  }
}

void back_up(const std::filesystem::path& cohort_file, const std::filesystem::path& backup,
             const std::vector<PerfRecord>& batch, const std::string& reason) {
  std::filesystem::create_directories(backup);
  std::filesystem::copy_file(cohort_file, backup / cohort_file.filename());
  std::ostringstream provenance;
  provenance << "cohort file: " << cohort_file.string() << "\nreseeded at: " << utc_timestamp()
             << "\nreason: " << reason << "\nrecords:\n";
  for (const PerfRecord& r : batch) provenance << "  " << r.record_id << " " << r.source << "\n";
  write_file_atomically(backup / "PROVENANCE.txt", provenance.str(), {.create_parents = true});
}

}  // namespace

void validate_reseed_batch(const std::vector<PerfRecord>& batch, const BaselineStore& store) {
  FASTDIT_CHECK(!batch.empty(), "reseed rejected: no records given");
  for (const PerfRecord& r : batch)
    FASTDIT_CHECK(r.success, "reseed rejected: ", r.source, " is a failed run (success = false)");
  require_one(batch, [](const PerfRecord& r) { return r.model_id; }, "model ids");
  require_one(batch, [](const PerfRecord& r) { return r.gpu_type; }, "GPU types");
  require_one(batch, cohort_text, "cohorts (benchmark, version, recipe, hardware or software)");
  std::set<std::string> seen;
  for (const PerfRecord& r : store.cohort_history(batch.front())) seen.insert(r.record_id);
  for (const PerfRecord& r : batch)
    FASTDIT_CHECK(seen.insert(r.record_id).second, "reseed rejected: ", r.source, " (", r.record_id,
                  ") is already in the batch or the baseline");
  for (const auto& history : store.benchmark_histories(batch.front().benchmark_id, batch.front().benchmark_version)) {
    const PerfRecord& first = history.front();
    bool trusted = false;
    for (const PerfRecord& r : history) trusted = trusted || r.eligible();
    FASTDIT_CHECK(!trusted || first.recipe_fingerprint == batch.front().recipe_fingerprint,
                  "reseed rejected: ", batch.front().benchmark_id, " v", first.benchmark_version,
                  " already has a baseline under recipe ", first.recipe_fingerprint,
                  ": bump benchmark_version when the recipe changes");
  }
  require_agreement(batch);
}

ReseedOutcome reseed(const std::vector<PerfRecord>& batch, const BaselineStore& store, const ReseedRequest& request) {
  FASTDIT_CHECK(!request.reason.empty(), "reseed rejected: give the reason for the shift (--reason)");
  validate_reseed_batch(batch, store);
  ReseedOutcome outcome;
  const PerfRecord& first = batch.front();
  outcome.cohort_file = store.cohort_file(first);
  std::vector<PerfRecord> history = store.cohort_history(first);
  outcome.before = metric_medians(baseline_window(history, request.policy.window));
  std::vector<const PerfRecord*> all;
  for (const PerfRecord& r : batch) all.push_back(&r);
  outcome.batch = metric_medians(all);

  const std::string timestamp = utc_timestamp();
  if (std::filesystem::exists(outcome.cohort_file)) {
    outcome.backup = request.backup_root / (timestamp + "_" + first.benchmark_id);
    back_up(outcome.cohort_file, outcome.backup, batch, request.reason);
  }
  std::vector<nlohmann::ordered_json> lines;
  for (const PerfRecord& r : batch) {
    nlohmann::ordered_json line = r.json;
    line["comparison_status"] = nullptr;
    line["baseline_eligible"] = true;
    line["reseed"] = {{"reason", request.reason}, {"timestamp", timestamp}};
    lines.push_back(line);
    history.push_back(parse_record(line, r.source));
  }
  store.append(first, lines);
  const std::vector<const PerfRecord*> window = baseline_window(history, request.policy.window);
  outcome.after = metric_medians(window);
  for (const PerfRecord& r : history) outcome.eligible_after += r.eligible();
  return outcome;
}

std::string format_reseed(const ReseedOutcome& outcome, const BaselinePolicy& policy) {
  std::ostringstream out;
  out << "cohort " << outcome.cohort_file.string() << "\n";
  out << (outcome.backup.empty() ? std::string("no earlier baseline (first seed)")
                                 : "old baseline backed up to " + outcome.backup.string())
      << "\n\n";
  char line[128];
  std::snprintf(line, sizeof line, "%-16s %14s %14s %14s\n", "metric", "old median", "batch median", "new median");
  out << line;
  const auto cell = [](const std::map<std::string, double>& medians, const std::string& metric) {
    const auto it = medians.find(metric);
    return it == medians.end() ? std::string("-") : format_number(it->second);
  };
  for (const MetricSpec& metric : gated_metrics()) {
    const std::string name(metric.name);
    if (!outcome.batch.count(name)) continue;
    std::snprintf(line, sizeof line, "%-16s %14s %14s %14s\n", name.c_str(), cell(outcome.before, name).c_str(),
                  cell(outcome.batch, name).c_str(), cell(outcome.after, name).c_str());
    out << line;
  }
  out << "\n" << outcome.eligible_after << " eligible record(s) in the cohort";
  if (outcome.eligible_after < policy.min_records)
    out << "; `perf check` needs " << policy.min_records << " before it compares (reseed more runs)";
  out << "\n";
  return out.str();
}

}  // namespace fastdit::perf
