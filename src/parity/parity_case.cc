#include "parity/parity_case.h"

#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>
#include <unistd.h>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "trace/activation_trace.h"

namespace fastdit {

namespace fs = std::filesystem;

Comparison compare_tensors(const Tensor& out, const Tensor& ref) {
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

namespace {

std::string scientific(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}

// Traces the model with the reference trace's stats and names the first divergence.
void locate_divergence(const fs::path& reference_trace, DiTModel& model, const TensorMap& inputs,
                       DType dtype, ParityResult& result) {
  const auto reference = trace::read_trace(reference_trace.string());
  FASTDIT_CHECK(!reference.empty(), reference_trace.string(), ": empty trace");
  trace::TraceConfig config;
  config.enabled = true;
  config.stats.clear();
  for (const auto& [key, value] : reference.front().json.items()) {
    if (key == "module" || key == "tensor" || key == "step") continue;
    config.stats.push_back(trace::parse_stat(key));
  }
  config.output = (fs::temp_directory_path() / ("fastdit_parity_trace_" + std::to_string(::getpid()) + ".jsonl")).string();
  auto tracer = std::make_shared<trace::ActivationTrace>(config);
  tracer->attach(model);
  model.forward(inputs);
  for (auto& [name, module] : model.named_modules()) module->clear_forward_hooks();
  const auto ours = trace::read_trace(config.output);
  fs::remove(config.output);
  // A bfloat16 run drifts from a float32 reference by bf16 noise at every module.
  const trace::DiffOptions options{dtype == DType::Float32 ? 1e-3 : 5e-2, 1e-6};
  const auto report = trace::diff_traces(ours, reference, options);
  std::ostringstream text;
  trace::print_report(text, report, options);
  result.divergence_report = text.str();
  if (report.first) result.first_divergence = report.first->a->module;
}

}  // namespace

ParityResult run_parity_case(const fs::path& dir, Device device, DType dtype,
                             std::optional<bool> fuse_projections, const nn::SequenceParallel* sequence_parallel) {
  FASTDIT_CHECK(fs::is_directory(dir), dir.string(), ": not a parity case directory");
  for (const char* f : {"inputs.safetensors", "outputs.safetensors"})
    FASTDIT_CHECK(fs::exists(dir / f), dir.string(), ": missing ", f);
  const SafetensorsFile outputs = SafetensorsFile::open(dir / "outputs.safetensors");
  FASTDIT_CHECK(outputs.contains("sample"), (dir / "outputs.safetensors").string(),
                ": no 'sample' tensor (the float32 reference output)");
  const Tensor reference = outputs.tensor("sample").to(DType::Float32);

  trace::trace_config_from_env();  // a bad trace setting fails before the load
  LoadOptions options{device, dtype};
  options.fuse_projections = fuse_projections;
  options.sequence_parallel = sequence_parallel;
  LoadedTransformer loaded = load_transformer(dir / "transformer", options);
  DiTModel& model = *loaded.model;
  auto env_trace = trace::attach_from_env(model);
  const TensorMap inputs = read_model_inputs(dir / "inputs.safetensors", model, device);
  const Tensor out = model.forward(inputs).at("sample").to(Device::cpu(), DType::Float32);

  ParityResult result;
  result.model_type = model.type_name();
  result.output_shape = out.shape();
  result.bound = 1e-4;
  result.bound_note = "float32 bound";
  if (dtype != DType::Float32) {
    result.bound = 1e-2;
    result.bound_note = "no reference bf16 run in the case";
    if (outputs.contains("sample_bf16")) {
      const double ref_bf16 = compare_tensors(outputs.tensor("sample_bf16"), reference).rel_l2;
      result.bound = std::max(1.5 * ref_bf16, 1e-3);
      result.bound_note = "1.5 x reference bf16 rel_l2 " + scientific(ref_bf16) + ", at least 1e-3";
    }
  }
  const Comparison c = compare_tensors(out, reference);
  result.rel_l2 = c.rel_l2;
  result.max_abs = c.max_abs;
  result.pass = c.rel_l2 <= result.bound;  // NaN fails
  const bool one_process = !sequence_parallel || sequence_parallel->world_size() == 1;
  if (!result.pass && !one_process) result.divergence_report = "(run without --sp to name the first divergent module)\n";
  if (!result.pass && one_process && fs::exists(dir / "trace.jsonl")) {
    if (env_trace)
      for (auto& [name, module] : model.named_modules()) module->clear_forward_hooks();
    locate_divergence(dir / "trace.jsonl", model, inputs, dtype, result);
  }
  return result;
}

}  // namespace fastdit
