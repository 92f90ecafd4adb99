#include "configs/config_reader.h"

#include <cstdint>
#include <fstream>

#include "core/error.h"
#include "core/files.h"

namespace fastdit {

ConfigReader::ConfigReader(nlohmann::json json, std::string source)
    : json_(std::move(json)), source_(std::move(source)) {
  FASTDIT_CHECK(json_.is_object(), source_, ": expected a JSON object at the top level");
}

ConfigReader ConfigReader::from_file(const std::string& path) {
  const std::string text = read_regular_file(path);  // a FIFO or folder is refused, never opened
  check_json_depth(text, kMaxJsonDepth, path);
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  FASTDIT_CHECK(!json.is_discarded(), path, ": not valid JSON");
  return ConfigReader(std::move(json), path);
}

bool ConfigReader::has(const std::string& key) const {
  auto it = json_.find(key);
  return it != json_.end() && !it->is_null();
}

void ConfigReader::type_error(const std::string& key, const char* expected) const {
  FASTDIT_FAIL(source_, ": key '", key, "' must be ", expected, ", found ", json_.at(key).dump());
}

const nlohmann::json* ConfigReader::lookup(const std::string& key, const char*) {
  consumed_.insert(key);
  auto it = json_.find(key);
  return it == json_.end() || it->is_null() ? nullptr : &*it;
}

namespace {
template <class T>
T required(const std::optional<T>& fallback, const std::string& source, const std::string& key) {
  FASTDIT_CHECK(fallback.has_value(), source, ": missing required key '", key, "'");
  return *fallback;
}
}  // namespace

int64_t ConfigReader::bounded(const std::string& key, int64_t value) const {
  FASTDIT_CHECK(value >= -kMaxConfigInt && value <= kMaxConfigInt, source_, ": ", key, " = ", value,
                " is out of range (config sizes are at most 2^31 = ", kMaxConfigInt, ")");
  return value;
}

int64_t ConfigReader::get_int64(const std::string& key, std::optional<int64_t> fallback) {
  const auto* v = lookup(key, "an integer");
  if (!v) return required(fallback, source_, key);
  if (!v->is_number_integer()) type_error(key, "an integer");
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    FASTDIT_FAIL(source_, ": ", key, " = ", v->dump(), " does not fit in int64");
  return v->get<int64_t>();
}

int64_t ConfigReader::get_int(const std::string& key, std::optional<int64_t> fallback) {
  return bounded(key, get_int64(key, fallback));
}

double ConfigReader::get_float(const std::string& key, std::optional<double> fallback) {
  const auto* v = lookup(key, "a number");
  if (!v) return required(fallback, source_, key);
  if (!v->is_number()) type_error(key, "a number");
  return v->get<double>();
}

bool ConfigReader::get_bool(const std::string& key, std::optional<bool> fallback) {
  const auto* v = lookup(key, "a boolean");
  if (!v) return required(fallback, source_, key);
  if (!v->is_boolean()) type_error(key, "a boolean");
  return v->get<bool>();
}

std::string ConfigReader::get_string(const std::string& key, std::optional<std::string> fallback) {
  const auto* v = lookup(key, "a string");
  if (!v) return required(fallback, source_, key);
  if (!v->is_string()) type_error(key, "a string");
  return v->get<std::string>();
}

std::optional<int64_t> ConfigReader::get_optional_int(const std::string& key) {
  if (!has(key)) {
    consumed_.insert(key);
    return std::nullopt;
  }
  return get_int(key);
}

std::optional<int64_t> ConfigReader::get_optional_int64(const std::string& key) {
  if (!has(key)) {
    consumed_.insert(key);
    return std::nullopt;
  }
  return get_int64(key);
}

std::optional<std::string> ConfigReader::get_optional_string(const std::string& key) {
  if (!has(key)) {
    consumed_.insert(key);
    return std::nullopt;
  }
  return get_string(key);
}

std::vector<int64_t> ConfigReader::get_int_list(const std::string& key,
                                                std::optional<std::vector<int64_t>> fallback) {
  const auto* v = lookup(key, "a list of integers");
  if (!v) return required(fallback, source_, key);
  if (!v->is_array()) type_error(key, "a list of integers");
  std::vector<int64_t> out;
  for (const auto& item : *v) {
    if (!item.is_number_integer() || (item.is_number_unsigned() && item.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)))
      type_error(key, "a list of integers");
    out.push_back(bounded(key, item.get<int64_t>()));
  }
  return out;
}

void ConfigReader::ignore(const std::string& key, const char*) { consumed_.insert(key); }

void ConfigReader::finish() const {
  std::string unknown;
  for (const auto& [key, value] : json_.items())
    if (!consumed_.count(key)) unknown += (unknown.empty() ? "'" : ", '") + key + "'";
  FASTDIT_CHECK(unknown.empty(), source_, ": unknown config key(s) ", unknown,
                " (not part of this model's config; remove them or fix the spelling)");
}

}  // namespace fastdit
