#include "models/model_io.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "configs/config_reader.h"
#include "core/error.h"

namespace fastdit {

const TensorInputSpec* ModelIO::find_tensor(const std::string& name) const {
  for (const auto& spec : tensors)
    if (spec.name == name) return &spec;
  return nullptr;
}

const ArgSpec* ModelIO::find_arg(const std::string& name) const {
  for (const auto& spec : args)
    if (spec.name == name) return &spec;
  return nullptr;
}

std::string ModelIO::name_of(InputRole role) const {
  for (const auto& spec : tensors)
    if (spec.role == role) return spec.name;
  return {};
}

std::string ModelIO::accepted_names() const {
  std::string list;
  for (const auto& spec : tensors) list += (list.empty() ? "" : ", ") + spec.name;
  for (const auto& spec : args) list += (list.empty() ? "" : ", ") + spec.name + " (" + arg_type_name(spec.type) + ")";
  return list;
}

bool ModelIO::has_output(const std::string& name) const {
  return std::find(outputs.begin(), outputs.end(), name) != outputs.end();
}

bool ModelIO::has_optional_output(const std::string& name) const {
  return std::find(optional_outputs.begin(), optional_outputs.end(), name) != optional_outputs.end();
}

const Tensor& input_or_none(const TensorMap& inputs, const std::string& name) {
  static const Tensor none;
  auto it = inputs.find(name);
  return it == inputs.end() ? none : it->second;
}

const char* arg_type_name(ArgType type) {
  switch (type) {
    case ArgType::Bool: return "bool";
    case ArgType::Int: return "int";
    case ArgType::Float: return "float";
    case ArgType::IntList: return "int list";
    case ArgType::FloatList: return "float list";
  }
  return "?";
}

std::string arg_value_str(const ArgValue& value) {
  return std::visit([](const auto& v) { return nlohmann::json(v).dump(); }, value);
}

bool is_ignored_reference_arg(const std::string& name) {
  return name == "return_dict" || name == "attention_kwargs" || name == "joint_attention_kwargs";
}

namespace {

const char* kind_name(ElementKind kind) {
  switch (kind) {
    case ElementKind::Floating: return "a floating-point";
    case ElementKind::Integer: return "an integer";
    case ElementKind::Bool: return "a bool";
    case ElementKind::Number: return "a numeric";
  }
  return "?";
}

bool kind_accepts(ElementKind kind, DType dtype) {
  switch (kind) {
    case ElementKind::Floating: return is_floating(dtype);
    case ElementKind::Integer: return !is_floating(dtype) && dtype != DType::Bool;
    case ElementKind::Bool: return dtype == DType::Bool;
    case ElementKind::Number: return dtype != DType::Bool;
  }
  return false;
}

// The value coerced to the declared type: an int where a float is declared becomes a float
// (Python and JSON write 24 for 24.0); anything else of another type is an error.
ArgValue coerce(const ArgSpec& spec, const ArgValue& value, const std::string& what) {
  const auto mismatch = [&]() -> ArgValue {
    FASTDIT_FAIL(what, ": argument '", spec.name, "' must be ", arg_type_name(spec.type), ", got ",
                 arg_value_str(value));
  };
  switch (spec.type) {
    case ArgType::Bool:
      return std::holds_alternative<bool>(value) ? value : mismatch();
    case ArgType::Int:
      return std::holds_alternative<int64_t>(value) ? value : mismatch();
    case ArgType::Float:
      if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
      if (const auto* d = std::get_if<double>(&value)) {
        FASTDIT_CHECK(std::isfinite(*d), what, ": argument '", spec.name, "' must be finite, got ", *d);
        return value;
      }
      return mismatch();
    case ArgType::IntList:
      return std::holds_alternative<std::vector<int64_t>>(value) ? value : mismatch();
    case ArgType::FloatList:
      if (const auto* ints = std::get_if<std::vector<int64_t>>(&value))
        return std::vector<double>(ints->begin(), ints->end());
      if (const auto* ds = std::get_if<std::vector<double>>(&value)) {
        for (double d : *ds)
          FASTDIT_CHECK(std::isfinite(d), what, ": argument '", spec.name, "' must hold finite values, got ", d);
        return value;
      }
      return mismatch();
  }
  return mismatch();
}

template <class T>
const T& checked_get(const ArgMap& args, const std::string& name) {
  auto it = args.find(name);
  FASTDIT_CHECK(it != args.end(), "argument '", name, "' was not given and has no default");
  const T* v = std::get_if<T>(&it->second);
  FASTDIT_CHECK(v, "argument '", name, "' holds ", arg_value_str(it->second), ", not the declared type");
  return *v;
}

template <class T>
std::optional<T> optional_get(const ArgMap& args, const std::string& name) {
  if (!args.count(name)) return std::nullopt;
  return checked_get<T>(args, name);
}

}  // namespace

ArgMap check_call(const ModelIO& io, const std::string& what, const TensorMap& inputs, const ArgMap& args) {
  for (const auto& [name, tensor] : inputs) {
    const TensorInputSpec* spec = io.find_tensor(name);
    FASTDIT_CHECK(spec, what, ": '", name, "' is not an input (accepted: ", io.accepted_names(), ")");
    if (!tensor.defined()) continue;
    if (!spec->ranks.empty()) {
      std::string ranks;
      for (auto r : spec->ranks) ranks += (ranks.empty() ? "" : " or ") + std::to_string(r);
      FASTDIT_CHECK(std::find(spec->ranks.begin(), spec->ranks.end(), tensor.dim()) != spec->ranks.end(), what,
                    ": input '", name, "' must have rank ", ranks, ", got ", tensor.str());
    }
    FASTDIT_CHECK(kind_accepts(spec->kind, tensor.dtype()), what, ": input '", name, "' must be ",
                  kind_name(spec->kind), " tensor, got ", tensor.str());
    FASTDIT_CHECK(spec->role == InputRole::Other || tensor.numel() > 0, what, ": input '", name, "' ", tensor.str(),
                  " is empty (a dimension of size 0)");
  }
  for (const auto& spec : io.tensors) {
    auto it = inputs.find(spec.name);
    FASTDIT_CHECK(!spec.required || (it != inputs.end() && it->second.defined()), what, ": missing input '",
                  spec.name, "'");
  }
  ArgMap checked;
  for (const auto& [name, value] : args) {
    if (is_ignored_reference_arg(name)) continue;
    const ArgSpec* spec = io.find_arg(name);
    FASTDIT_CHECK(spec, what, ": '", name, "' is not an argument (accepted: ", io.accepted_names(), ")");
    checked[name] = coerce(*spec, value, what);
  }
  for (const auto& spec : io.args) {
    if (checked.count(spec.name)) continue;
    FASTDIT_CHECK(!spec.required, what, ": missing argument '", spec.name, "' (", arg_type_name(spec.type), ")");
    if (spec.default_value) checked[spec.name] = *spec.default_value;
  }
  return checked;
}

bool arg_bool(const ArgMap& args, const std::string& name) { return checked_get<bool>(args, name); }
int64_t arg_int(const ArgMap& args, const std::string& name) { return checked_get<int64_t>(args, name); }
double arg_float(const ArgMap& args, const std::string& name) { return checked_get<double>(args, name); }
std::optional<std::vector<int64_t>> arg_int_list(const ArgMap& args, const std::string& name) {
  return optional_get<std::vector<int64_t>>(args, name);
}
std::optional<std::vector<double>> arg_float_list(const ArgMap& args, const std::string& name) {
  return optional_get<std::vector<double>>(args, name);
}

namespace {

// One JSON value as the declared type wants it; `where` names it in errors.
ArgValue json_value(const ArgSpec& spec, const nlohmann::json& v, const std::string& where) {
  const auto fail = [&]() -> ArgValue {
    FASTDIT_FAIL(where, ": argument '", spec.name, "' must be ", arg_type_name(spec.type), ", found ", v.dump());
  };
  const bool list = spec.type == ArgType::IntList || spec.type == ArgType::FloatList;
  if (!list) {
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) return v.get<double>();
    return fail();
  }
  if (!v.is_array()) return fail();
  std::vector<int64_t> ints;
  std::vector<double> floats;
  bool all_integer = true;
  for (const auto& item : v) {
    if (item.is_boolean() || !item.is_number()) return fail();
    if (!item.is_number_integer()) all_integer = false;
    floats.push_back(item.get<double>());
    if (item.is_number_integer()) ints.push_back(item.get<int64_t>());
  }
  if (all_integer) return ints;
  return floats;
}

}  // namespace

ArgMap args_from_json(const ModelIO& io, const nlohmann::json& object, const std::string& source) {
  FASTDIT_CHECK(object.is_object(), source, ": arguments must be a JSON object of name: value");
  ArgMap args;
  for (const auto& [name, value] : object.items()) {
    if (is_ignored_reference_arg(name) || value.is_null()) continue;
    const ArgSpec* spec = io.find_arg(name);
    FASTDIT_CHECK(spec, source, ": '", name, "' is not an argument of this model (accepted: ",
                  io.accepted_names(), ")");
    args[name] = coerce(*spec, json_value(*spec, value, source), source);
  }
  return args;
}

ArgMap read_args_file(const std::filesystem::path& path, const ModelIO& io) {
  const ConfigReader reader = ConfigReader::from_file(path.string());
  return args_from_json(io, reader.json(), path.string());
}

}  // namespace fastdit
