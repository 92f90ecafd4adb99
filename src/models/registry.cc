#include <mutex>

#include "core/error.h"
#include "models/dit.h"

namespace fastdit {

namespace {
std::map<std::string, DiTFactory>& entries() {
  static std::map<std::string, DiTFactory> map;
  return map;
}
// The entries, with the built-in families registered before the first lookup.
std::map<std::string, DiTFactory>& registry() {
  static std::once_flag builtins;
  std::call_once(builtins, register_builtin_dits);
  return entries();
}
}  // namespace

TensorMap DiTModel::forward(const TensorMap& inputs, const ArgMap& args) {
  const ModelIO declared = io();
  const ArgMap checked = check_call(declared, type_name(), inputs, args);
  TensorMap outputs = run(inputs, checked);
  for (const auto& name : declared.outputs)
    FASTDIT_CHECK(outputs.count(name), type_name(), ": forward returned no '", name, "' output head");
  return outputs;
}

bool register_dit(const std::string& class_name, DiTFactory factory) {
  entries()[class_name] = std::move(factory);
  return true;
}

std::vector<std::string> registered_dits() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : registry()) names.push_back(name);
  return names;
}

std::unique_ptr<DiTModel> create_dit(ConfigReader& config, const BuildOptions& options) {
  FASTDIT_CHECK(config.has("_class_name"), config.source(),
                ": missing '_class_name' (which model class this config describes)");
  const std::string class_name = config.json().at("_class_name").is_string()
                                     ? config.json().at("_class_name").get<std::string>()
                                     : config.json().at("_class_name").dump();
  auto it = registry().find(class_name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& name : registered_dits()) known += (known.empty() ? "" : ", ") + name;
    FASTDIT_FAIL(config.source(), ": unknown _class_name '", class_name, "' (registered: ", known, ")");
  }
  auto model = it->second(config, options);
  model->assign_names();
  return model;
}

}  // namespace fastdit
