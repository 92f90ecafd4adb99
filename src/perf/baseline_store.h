// The baseline store: a folder (bench/baselines/ in the repository, so history is
// reviewed and versioned with the code) holding one JSON-lines file per cohort, its
// records oldest first:
//   <root>/<benchmark_id>/v<version>_<gpu_type>_<recipe>_<hardware>_<software>.jsonl
// The gpu_type in the name is for people; the ids decide.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "perf/record.h"

namespace fastdit::perf {

class BaselineStore {
 public:
  explicit BaselineStore(std::filesystem::path root) : root_(std::move(root)) {}
  const std::filesystem::path& root() const { return root_; }

  std::filesystem::path cohort_file(const PerfRecord& record) const;
  // Every record of `record`'s cohort, oldest first; none when the cohort has no file.
  std::vector<PerfRecord> cohort_history(const PerfRecord& record) const;
  // The histories of every cohort of one benchmark version, whatever their recipe,
  // hardware or software.
  std::vector<std::vector<PerfRecord>> benchmark_histories(const std::string& benchmark_id, int64_t version) const;
  std::vector<std::filesystem::path> cohort_files() const;  // every cohort, sorted by path

  // A cohort file's records; each line must parse and all must share one cohort.
  static std::vector<PerfRecord> read_cohort_file(const std::filesystem::path& path);
  static std::vector<PerfRecord> read_cohort_text(const std::string& text, const std::string& source);
  // Appends records of `record`'s cohort (rewrites the file atomically).
  void append(const PerfRecord& record, const std::vector<nlohmann::ordered_json>& lines) const;

 private:
  std::filesystem::path root_;
};

}  // namespace fastdit::perf
