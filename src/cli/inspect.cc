// fastdit inspect <model dir | transformer dir | .safetensors | index json>: the config and
// a table of every tensor, validated the same way loading validates them.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "cli/common.h"
#include "core/files.h"
#include "loader/safetensors.h"

namespace fastdit::cli {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

// The config with _class_name first: it says what everything else means.
Json read_config(const fs::path& path) {
  const std::string text = read_regular_file(path);
  check_json_depth(text, kMaxJsonDepth, path.string());
  Json config;
  try {
    config = Json::parse(text);
  } catch (const Json::exception& e) {
    FASTDIT_FAIL(path.string(), ": not valid JSON: ", e.what());
  }
  FASTDIT_CHECK(config.is_object(), path.string(), ": expected a JSON object");
  Json ordered = Json::object();
  if (config.contains("_class_name")) ordered["_class_name"] = config["_class_name"];
  for (const auto& [key, value] : config.items()) ordered[key] = value;
  return ordered;
}

bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

// The digit run starting at `pos` without leading zeros; advances `pos` past it.
std::string_view number_at(std::string_view text, size_t& pos) {
  const size_t begin = pos;
  while (pos < text.size() && is_digit(text[pos])) ++pos;
  const std::string_view digits = text.substr(begin, pos - begin);
  return digits.substr(std::min(digits.find_first_not_of('0'), digits.size()));
}

// Names with their numbers compared as numbers, so blocks.2 comes before blocks.10.
bool natural_less(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (is_digit(a[i]) && is_digit(b[j])) {
      const std::string_view x = number_at(a, i), y = number_at(b, j);
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
    } else if (a[i] != b[j]) {
      return a[i] < b[j];
    } else {
      ++i, ++j;
    }
  }
  const size_t a_rest = a.size() - i, b_rest = b.size() - j;
  return a_rest != b_rest ? a_rest < b_rest : a < b;
}

std::string human_bytes(uint64_t n) {
  static const char* const units[] = {" B", " KiB", " MiB", " GiB", " TiB", nullptr};
  return human_units(static_cast<double>(n), units, 1024);
}

struct Totals {
  uint64_t tensors = 0, parameters = 0, bytes = 0;
  void add(const SafetensorsTensorInfo& info) {
    ++tensors;
    parameters += static_cast<uint64_t>(shape_numel(info.shape));
    bytes += info.nbytes();
  }
  std::string str() const {
    const auto scaled = [](const std::string& text) {
      return std::isdigit(static_cast<unsigned char>(text.back())) ? "" : " (" + text + ")";
    };
    return detail::concat(tensors, tensors == 1 ? " tensor, " : " tensors, ", parameters,
                          " parameters", scaled(human_count(parameters)), ", ", bytes, " bytes",
                          bytes < 1024 ? "" : " (" + human_bytes(bytes) + ")");
  }
};

void print_tensor_table(const SafetensorsCheckpoint& checkpoint) {
  const bool sharded = checkpoint.files().size() > 1;
  std::cout << "checkpoint: " << checkpoint.source().string();
  if (!checkpoint.index_path().empty() && checkpoint.index_path() != checkpoint.source())
    std::cout << " (index " << checkpoint.index_path().filename().string() << ")";
  std::cout << "\n";
  for (const SafetensorsFile& file : checkpoint.files()) {
    if (file.metadata().empty()) continue;
    std::cout << "metadata of " << fs::path(file.label()).filename().string() << ":";
    for (const auto& [key, value] : file.metadata()) std::cout << " " << key << "=" << value;
    std::cout << "\n";
  }

  std::vector<std::string> names = checkpoint.names();
  std::sort(names.begin(), names.end(), natural_less);
  std::vector<std::vector<std::string>> rows{{"name", "dtype", "shape", "bytes"}};
  if (sharded) rows[0].push_back("file");
  Totals total;
  std::map<std::string, Totals> per_dtype;
  for (const std::string& name : names) {
    const SafetensorsTensorInfo& info = checkpoint.info(name);
    rows.push_back({name, dtype_name(info.dtype), shape_str(info.shape),
                    std::to_string(info.nbytes())});
    if (sharded) rows.back().push_back(checkpoint.file_of(name).filename().string());
    total.add(info);
    per_dtype[dtype_name(info.dtype)].add(info);
  }

  constexpr size_t kBytesColumn = 3;  // right-aligned, so sizes line up on their last digit
  print_columns(std::cout, rows, kBytesColumn);
  std::cout << "\ntotal: " << total.str() << "\n";
  for (const auto& [dtype, totals] : per_dtype)
    std::cout << "  " << dtype << ": " << totals.str() << "\n";
}

void inspect(const fs::path& path) {
  std::error_code error;
  FASTDIT_CHECK(fs::exists(path, error), path.string(), ": no such file or directory");
  const fs::path dir = fs::is_directory(path) ? transformer_dir(path) : fs::path();
  const fs::path config_path = dir.empty() ? fs::path() : dir / "config.json";
  const bool has_config = !dir.empty() && fs::exists(config_path);
  // Everything is read and validated before anything is printed.
  const Json config = has_config ? read_config(config_path) : Json();
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(dir.empty() ? path : dir);
  if (has_config)
    std::cout << "config: " << config_path.string() << "\n"
              << config.dump(2, ' ', false, Json::error_handler_t::replace) << "\n\n";
  print_tensor_table(checkpoint);
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "inspect", "print the config and tensor table of a model dir, .safetensors or index json");
  auto path = std::make_shared<std::string>();
  cmd->add_option("path", *path, "model dir, transformer dir, .safetensors file or index json")
      ->required();
  cmd->callback([path] { inspect(*path); });
}

}  // namespace fastdit::cli
