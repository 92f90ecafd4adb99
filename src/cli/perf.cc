// fastdit perf: the performance history kept in the repository (bench/baselines/).
//   perf check <record> [--append]   gate a normalized record against its cohort's baseline
//   perf reseed <record>... --reason  move a cohort's baseline after an accepted shift
//   perf report [--output page.html]  static HTML page of every cohort's history
#include <sys/stat.h>

#include <iostream>

#include "cli/commands.h"
#include "core/files.h"
#include "perf/check.h"
#include "perf/report.h"
#include "perf/reseed.h"

namespace fastdit::cli {

namespace {

struct PerfArgs {
  std::string baselines = "bench/baselines";
  perf::BaselinePolicy policy;
  std::vector<std::string> records;
  bool append = false;
  std::string reason;
  std::string backup_dir;
  std::string output = "bench/report/index.html";
};

void add_store_options(CLI::App& cmd, PerfArgs& a) {
  cmd.add_option("--baselines", a.baselines, "baseline store folder")->capture_default_str();
  cmd.add_option("--window", a.policy.window, "baseline = median of the last N eligible records")
      ->capture_default_str();
  cmd.add_option("--min-records", a.policy.min_records, "eligible records a cohort needs before it is compared")
      ->capture_default_str();
}

// The store must exist: a mistyped --baselines is an error, not an empty history.
perf::BaselineStore open_store(const PerfArgs& a) {
  struct stat st {};
  FASTDIT_CHECK(::stat(a.baselines.c_str(), &st) == 0, "--baselines ", a.baselines,
                ": no such folder (the baseline store; make an empty folder to start a new one)");
  FASTDIT_CHECK(S_ISDIR(st.st_mode), "--baselines ", a.baselines, ": is a ", file_kind(st.st_mode),
                ", not a folder");
  return perf::BaselineStore(a.baselines);
}

void run_check(const PerfArgs& a) {
  const perf::PerfRecord record = perf::read_record_file(a.records.front());  // a bad record first
  const perf::BaselineStore store = open_store(a);
  const perf::CheckResult result = perf::check_record(record, store, a.policy);
  std::cout << perf::format_check(record, result);
  if (a.append) {
    nlohmann::ordered_json line = record.json;
    line["comparison_status"] = perf::status_name(result.status);
    line["baseline_eligible"] = record.success && result.status == perf::CheckStatus::Pass;
    line["reseed"] = nullptr;
    store.append(record, {line});
    std::cout << "appended to " << result.cohort_file.string()
              << (line["baseline_eligible"].get<bool>() ? " (eligible for the baseline)" : " (not eligible)") << "\n";
  }
  exit_code() = perf::status_fails(result.status) ? 1 : 0;
}

void run_reseed(const PerfArgs& a) {
  std::vector<perf::PerfRecord> batch;
  for (const std::string& path : a.records) batch.push_back(perf::read_record_file(path));
  const perf::BaselineStore store = open_store(a);
  perf::ReseedRequest request{a.reason, a.backup_dir, a.policy};
  if (request.backup_root.empty()) request.backup_root = std::filesystem::temp_directory_path() / "fastdit-reseed-backup";
  const perf::ReseedOutcome outcome = perf::reseed(batch, store, request);
  std::cout << "reseeded with " << batch.size() << " record(s)\n" << perf::format_reseed(outcome, a.policy);
}

void run_report(const PerfArgs& a) {
  const perf::BaselineStore store = open_store(a);
  check_output_path(a.output, "--output");
  write_file_atomically(a.output, perf::render_report_html(store, a.policy),
                        {.label = "--output", .create_parents = true});
  std::cout << "report " << a.output << "\n";
}

}  // namespace

void add_perf_command(CLI::App& app) {
  auto a = std::make_shared<PerfArgs>();
  auto* perf = app.add_subcommand("perf", "performance history: check a record, reseed a baseline, report");
  perf->require_subcommand(1);

  auto* check = perf->add_subcommand("check", "compare a normalized record with its cohort's baseline "
                                              "(exit 1 on REGRESSION, RECIPE_MISMATCH or RUN_FAILED)");
  check->add_option("record", a->records, "normalized record JSON from `fastdit bench --config <definition>`")
      ->required()
      ->expected(1);
  check->add_flag("--append", a->append, "append the record, with its status, to the cohort's history");
  add_store_options(*check, *a);
  check->callback([a] { run_check(*a); });

  auto* reseed = perf->add_subcommand("reseed", "append an accepted batch of records to its cohort's baseline");
  reseed->add_option("records", a->records, "normalized record JSON files of one cohort")->required();
  reseed->add_option("--reason", a->reason, "why the shift is accepted (kept in the records)")->required();
  reseed->add_option("--backup-dir", a->backup_dir, "where the old baseline is copied (default: <tmp>/fastdit-reseed-backup)");
  add_store_options(*reseed, *a);
  reseed->callback([a] { run_reseed(*a); });

  auto* report = perf->add_subcommand("report", "write a static HTML page of every cohort's history");
  report->add_option("--output", a->output, "HTML file to write")->capture_default_str();
  add_store_options(*report, *a);
  report->callback([a] { run_report(*a); });
}

}  // namespace fastdit::cli
