// Strict reading of a model's config.json: every key must be read or explicitly
// ignored with a reason; a wrong type or an unknown key is an error that names the
// file and the key.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fastdit {

// Every integer get_int and get_int_list read is at most this in magnitude (a width, a
// count, a patch size); a larger one is an error naming the key. Products of them are
// checked where a config derives them (DiTArchConfig), so no shape can wrap int64.
inline constexpr int64_t kMaxConfigInt = int64_t{1} << 31;

class ConfigReader {
 public:
  ConfigReader(nlohmann::json json, std::string source);
  static ConfigReader from_file(const std::string& path);

  bool has(const std::string& key) const;  // present and not null
  // Bounded by kMaxConfigInt.
  int64_t get_int(const std::string& key, std::optional<int64_t> fallback = std::nullopt);
  // Any int64 (a seed).
  int64_t get_int64(const std::string& key, std::optional<int64_t> fallback = std::nullopt);
  double get_float(const std::string& key, std::optional<double> fallback = std::nullopt);
  bool get_bool(const std::string& key, std::optional<bool> fallback = std::nullopt);
  std::string get_string(const std::string& key, std::optional<std::string> fallback = std::nullopt);
  std::optional<int64_t> get_optional_int(const std::string& key);
  std::optional<int64_t> get_optional_int64(const std::string& key);
  std::optional<std::string> get_optional_string(const std::string& key);
  std::vector<int64_t> get_int_list(const std::string& key,
                                    std::optional<std::vector<int64_t>> fallback = std::nullopt);
  // Marks a key as known and deliberately unused (reason is documentation only).
  void ignore(const std::string& key, const char* reason);
  // Throws when keys were neither read nor ignored.
  void finish() const;

  const nlohmann::json& json() const { return json_; }
  const std::string& source() const { return source_; }

 private:
  const nlohmann::json* lookup(const std::string& key, const char* expected);
  [[noreturn]] void type_error(const std::string& key, const char* expected) const;
  int64_t bounded(const std::string& key, int64_t value) const;

  nlohmann::json json_;
  std::string source_;
  std::set<std::string> consumed_;
};

}  // namespace fastdit
