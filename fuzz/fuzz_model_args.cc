// libFuzzer target: a forward's non-tensor arguments (args.json, `run --args`) read against a
// model's declaration and checked as a call. The first byte picks the registered class (built
// from its defaults, no weights); the rest is the JSON object. The call's tensors are
// placeholders of each declared input's first accepted rank. Anything but fastdit::Error
// escaping is a finding.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "configs/config_reader.h"
#include "core/error.h"
#include "core/files.h"
#include "models/dit.h"

namespace {
struct Declared {
  fastdit::ModelIO io;
  fastdit::TensorMap inputs;
};

const Declared& declared(const std::string& name) {
  static std::map<std::string, Declared> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  fastdit::ConfigReader config(nlohmann::json{{"_class_name", name}}, name);
  const auto model = fastdit::create_dit(config);
  Declared d{model->io(), {}};
  for (const auto& spec : d.io.tensors) {
    const int64_t rank = spec.ranks.empty() ? 1 : spec.ranks.front();
    const fastdit::DType dtype = spec.kind == fastdit::ElementKind::Integer ? fastdit::DType::Int64
                                 : spec.kind == fastdit::ElementKind::Bool  ? fastdit::DType::Bool
                                                                            : fastdit::DType::Float32;
    d.inputs[spec.name] = fastdit::Tensor::zeros(fastdit::Shape(static_cast<size_t>(rank), 1), dtype);
  }
  return cache.emplace(name, std::move(d)).first->second;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto names = fastdit::registered_dits();
  const std::string name = names[data[0] % names.size()];
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const Declared& d = declared(name);
    fastdit::check_json_depth(text, fastdit::kMaxJsonDepth, "args.json");
    const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) return 0;
    const fastdit::ArgMap args = fastdit::args_from_json(d.io, json, "args.json");
    fastdit::check_call(d.io, name, d.inputs, args);
  } catch (const fastdit::Error&) {
  }
  return 0;
}
