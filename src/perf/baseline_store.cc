#include "perf/baseline_store.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/files.h"

namespace fastdit::perf {
namespace {

// Keeps a name component to characters every file system and shell takes as they are.
std::string file_safe(const std::string& text) {
  std::string safe = text;
  for (char& c : safe)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
  return safe;
}

// A cohort gains a line per checked run; a gigabyte of them is no store but a mistake.
constexpr size_t kMaxCohortFileBytes = size_t{1} << 30;

std::string read_text(const std::filesystem::path& path) { return read_regular_file(path, kMaxCohortFileBytes); }

}  // namespace

std::filesystem::path BaselineStore::cohort_file(const PerfRecord& r) const {
  return root_ / file_safe(r.benchmark_id) /
         ("v" + std::to_string(r.benchmark_version) + "_" + file_safe(r.gpu_type) + "_" +
          file_safe(r.recipe_fingerprint) + "_" + file_safe(r.hardware_profile_id) + "_" +
          file_safe(r.software_profile_id) + ".jsonl");
}

std::vector<PerfRecord> BaselineStore::read_cohort_file(const std::filesystem::path& path) {
  return read_cohort_text(read_text(path), path.string());
}

std::vector<PerfRecord> BaselineStore::read_cohort_text(const std::string& text, const std::string& source) {
  std::istringstream lines(text);
  std::vector<PerfRecord> records;
  int number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = source + ":" + std::to_string(number);
    records.push_back(parse_record_text(line, where));
    FASTDIT_CHECK(records.back().same_cohort(records.front()), where,
                  ": record belongs to another cohort than the first record of its file");
  }
  return records;
}

std::vector<PerfRecord> BaselineStore::cohort_history(const PerfRecord& record) const {
  const std::filesystem::path path = cohort_file(record);
  if (!std::filesystem::exists(path)) return {};
  std::vector<PerfRecord> history = read_cohort_file(path);
  FASTDIT_CHECK(history.empty() || history.front().same_cohort(record), path.string(),
                ": holds another cohort than its name says");
  return history;
}

std::vector<std::vector<PerfRecord>> BaselineStore::benchmark_histories(const std::string& benchmark_id,
                                                                        int64_t version) const {
  std::vector<std::vector<PerfRecord>> histories;
  const std::filesystem::path folder = root_ / file_safe(benchmark_id);
  if (!std::filesystem::is_directory(folder)) return histories;
  const std::string prefix = "v" + std::to_string(version) + "_";
  for (const std::filesystem::path& path : cohort_files()) {
    if (path.parent_path() != folder || !path.filename().string().starts_with(prefix)) continue;
    std::vector<PerfRecord> history = read_cohort_file(path);
    if (!history.empty()) histories.push_back(std::move(history));
  }
  return histories;
}

std::vector<std::filesystem::path> BaselineStore::cohort_files() const {
  std::vector<std::filesystem::path> files;
  if (!std::filesystem::is_directory(root_)) return files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root_))
    if (entry.is_regular_file() && entry.path().extension() == ".jsonl") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

void BaselineStore::append(const PerfRecord& record, const std::vector<nlohmann::ordered_json>& lines) const {
  const std::filesystem::path path = cohort_file(record);
  std::string text = std::filesystem::exists(path) ? read_text(path) : std::string();
  if (!text.empty() && text.back() != '\n') text += '\n';
  for (const auto& line : lines) text += line.dump() + "\n";
  write_file_atomically(path, text, {.label = "", .create_parents = true, .may_be_input = true});
}

}  // namespace fastdit::perf
