// libFuzzer target: a model's config.json as the loader reads it. The input is JSON text
// (depth-checked, parsed, then read strictly by the family the registry resolves); an object
// without a string _class_name gets one of the registered classes, picked by the first byte,
// so every family's arch config is reached. The model is built (parameters declared, no weights
// allocated) and its weight bytes counted with checked sizes. Anything but fastdit::Error
// escaping is a finding.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "configs/config_reader.h"
#include "core/error.h"
#include "core/files.h"
#include "loader/transformer_loader.h"
#include "models/dit.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    fastdit::check_json_depth(text, fastdit::kMaxJsonDepth, "config.json");
    nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_object()) return 0;
    if (!json.contains("_class_name") || !json["_class_name"].is_string()) {
      const auto names = fastdit::registered_dits();
      json["_class_name"] = names[data[0] % names.size()];
    }
    fastdit::ConfigReader config(std::move(json), "config.json");
    auto model = fastdit::create_dit(config);
    fastdit::parameter_bytes(*model, fastdit::DType::BFloat16, "config.json");
    (void)model->io();
  } catch (const fastdit::Error&) {
  }
  return 0;
}
