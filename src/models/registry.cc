#include <mutex>

#include "core/error.h"
#include "models/dit.h"

#include "ops/ops.h"

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
  TensorMap outputs;
  {
    const ops::QuantizedAttentionScope attention_precision(quantized_attention_);
    outputs = run(inputs, checked);
  }
  for (const auto& name : declared.outputs)
    FASTDIT_CHECK(outputs.count(name), type_name(), ": forward returned no '", name, "' output head");
  for (const auto& [name, tensor] : outputs)
    FASTDIT_CHECK(declared.has_output(name) || declared.has_optional_output(name), type_name(),
                  ": forward returned '", name, "', which its declaration does not name");
  return outputs;
}

ExampleShape video_latent_shape(int64_t batch, int64_t frames, int64_t height, int64_t width, int64_t text_len,
                                const std::array<int64_t, 3>& vae_stride, const std::string& what) {
  constexpr int64_t kMaxPixels = int64_t{1} << 20;
  for (const auto& [name, value] : {std::pair{"batch", batch}, std::pair{"frames", frames}, std::pair{"height", height},
                                    std::pair{"width", width}, std::pair{"text length", text_len}})
    FASTDIT_CHECK(value > 0 && value <= kMaxPixels, what, ": ", name, " ", value, " must lie in [1, ", kMaxPixels, "]");
  const auto [stride_t, stride_h, stride_w] = vae_stride;
  FASTDIT_CHECK(stride_t > 0 && stride_h > 0 && stride_w > 0, what, ": VAE strides must be positive");
  FASTDIT_CHECK((frames - 1) % stride_t == 0, what, ": frames ", frames, " must be 1 + a multiple of the VAE's ",
                "temporal stride ", stride_t);
  FASTDIT_CHECK(height % stride_h == 0 && width % stride_w == 0, what, ": height x width ", height, "x", width,
                " must be multiples of the VAE's spatial stride ", stride_h, "x", stride_w);
  return {batch, (frames - 1) / stride_t + 1, height / stride_h, width / stride_w, text_len};
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
  FASTDIT_CHECK(config.json().at("_class_name").is_string(), config.source(),
                ": '_class_name' must be a string (a model class name), found ", config.json().at("_class_name").dump());
  const std::string class_name = config.json().at("_class_name").get<std::string>();
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
