#include "cli/common.h"

#include <cmath>

#include "loader/safetensors.h"

namespace fastdit::cli {

DType RunOptions::parsed_dtype() const {
  const DType d = parse_dtype(dtype);
  FASTDIT_CHECK(d == DType::Float32 || d == DType::BFloat16 || d == DType::Float16, "--dtype ", dtype,
                ": models run in float32, bfloat16 or float16");
  return d;
}

void add_run_options(CLI::App& cmd, RunOptions& options) {
  cmd.add_option("--device", options.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd.add_option("--dtype", options.dtype, "float32, bfloat16 or float16")->capture_default_str();
}

PreparedModel prepare_model(const std::filesystem::path& path, const LoadOptions& options) {
  trace::trace_config_from_env();  // a bad trace setting fails before the (slow) load
  PreparedModel prepared{load_transformer(path, options), nullptr};
  prepared.trace = trace::attach_from_env(*prepared.loaded.model);
  return prepared;
}

TensorMap read_model_inputs(const std::filesystem::path& path, const DiTModel& model, Device device) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const auto accepted = model.input_names(false);
  TensorMap inputs;
  for (const auto& name : file.names()) {
    if (std::find(accepted.begin(), accepted.end(), name) == accepted.end()) {
      std::string list;
      for (const auto& a : accepted) list += (list.empty() ? "" : ", ") + a;
      FASTDIT_FAIL(path.string(), ": input '", name, "' is not an input of ", model.type_name(),
                   " (accepted: ", list, ")");
    }
    inputs[name] = file.tensor(name).to(device);
  }
  for (const auto& name : model.input_names(true))
    FASTDIT_CHECK(inputs.count(name), path.string(), ": missing input '", name, "' for ", model.type_name());
  return inputs;
}

Comparison compare(const Tensor& out, const Tensor& ref) {
  FASTDIT_CHECK(out.shape() == ref.shape(), "output shape ", shape_str(out.shape()),
                " differs from the reference's ", shape_str(ref.shape()));
  const auto x = out.to_float_vector(), y = ref.to_float_vector();
  double num = 0, den = 0, max_abs = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y[i];
    num += d * d;
    den += static_cast<double>(y[i]) * y[i];
    max_abs = std::max(max_abs, std::fabs(d));
  }
  if (std::isnan(num)) return {NAN, NAN};
  return {den > 0 ? std::sqrt(num / den) : std::sqrt(num), max_abs};
}

}  // namespace fastdit::cli
