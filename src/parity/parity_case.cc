#include "parity/parity_case.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
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
  double num = 0, den = 0, dot = 0, out_sq = 0, max_abs = 0, peak = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double a = x[i], b = y[i], d = a - b;
    num += d * d;
    den += b * b;
    dot += a * b;
    out_sq += a * a;
    max_abs = std::max(max_abs, std::fabs(d));
    peak = std::max(peak, std::fabs(b));
  }
  if (std::isnan(num) || std::isnan(dot) || std::isnan(den) || std::isnan(out_sq)) return {NAN, NAN, NAN, NAN};
  Comparison c;
  c.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  c.max_abs = max_abs;
  // sqrt of the product, not the product of sqrts: identical tensors give exactly 1.
  c.cosine = out_sq > 0 && den > 0 ? std::clamp(dot / std::sqrt(out_sq * den), -1.0, 1.0)
             : out_sq == den       ? 1.0
                                   : 0.0;
  c.psnr_db = num == 0 ? INFINITY : 20 * std::log10(peak / std::sqrt(num / static_cast<double>(x.size())));
  return c;
}

namespace {

std::string scientific(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}

// Traces the model with the reference trace's stats and names the first divergence.
void locate_divergence(const fs::path& reference_trace, DiTModel& model, const TensorMap& inputs,
                       const ArgMap& args, DType dtype, ParityResult& result) {
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
  model.forward(inputs, args);
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


// The reference of every declared head; a head the case lacks, or a tensor that is neither
// a head nor a head's bf16 run, is an error naming it.
std::map<std::string, Tensor> reference_heads(const SafetensorsFile& outputs, const fs::path& path,
                                              const ModelIO& io, const std::string& model) {
  std::map<std::string, Tensor> heads;
  for (const auto& name : io.outputs) {
    FASTDIT_CHECK(outputs.contains(name), path.string(), ": no '", name, "' tensor (the float32 reference of ", model,
                  "'s output head '", name, "')");
    heads[name] = outputs.tensor(name).to(DType::Float32);
  }
  for (const auto& name : outputs.names()) {
    const auto is_head = [&](const std::string& head) { return io.has_output(head) || io.has_optional_output(head); };
    const bool bf16 = name.size() > 5 && name.ends_with("_bf16") && is_head(name.substr(0, name.size() - 5));
    if (io.has_optional_output(name)) heads[name] = outputs.tensor(name).to(DType::Float32);
    FASTDIT_CHECK(is_head(name) || bf16, path.string(), ": '", name, "' is not an output head of ", model,
                  " (heads: ", [&] {
                    std::string list;
                    for (const auto& h : io.outputs) list += (list.empty() ? "" : ", ") + h;
                    return list;
                  }(), ", each optionally with <head>_bf16)");
  }
  return heads;
}

HeadResult judge_head(const std::string& name, const Tensor& out, const Tensor& reference,
                      const SafetensorsFile& outputs, DType dtype, Precision precision) {
  HeadResult head;
  head.name = name;
  head.shape = out.shape();
  head.bound = 1e-4;
  head.bound_note = "float32 bound";
  if (dtype != DType::Float32) {
    head.bound = 1e-2;
    head.bound_note = "no reference bf16 run in the case";
    if (outputs.contains(name + "_bf16")) {
      const double ref_bf16 = compare_tensors(outputs.tensor(name + "_bf16"), reference).rel_l2;
      head.bound = std::max(1.5 * ref_bf16, 1e-3);
      head.bound_note = "1.5 x reference bf16 rel_l2 " + scientific(ref_bf16) + ", at least 1e-3";
    }
  }
  if (precision == Precision::Fp8) {
    head.bound = std::max(head.bound, kFp8ForwardBound);
    head.bound_note += "; fp8: at least " + scientific(kFp8ForwardBound);
  }
  const Comparison c = compare_tensors(out, reference);
  head.rel_l2 = c.rel_l2;
  head.max_abs = c.max_abs;
  head.pass = c.rel_l2 <= head.bound;  // NaN fails
  return head;
}

}  // namespace

std::string head_lines(const ParityResult& result) {
  std::ostringstream text;
  for (const HeadResult& h : result.heads)
    text << h.name << " " << shape_str(h.shape) << " rel_l2=" << scientific(h.rel_l2)
         << " max_abs=" << scientific(h.max_abs) << " bound=" << scientific(h.bound) << " (" << h.bound_note << ") "
         << (h.pass ? "pass" : "FAIL") << "\n";
  return text.str();
}

std::vector<std::string> discover_cases(const fs::path& family_dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(family_dir, ec))
    if (entry.is_directory() && fs::exists(entry.path() / "inputs.safetensors"))
      names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

ParityResult run_parity_case(const fs::path& dir, Device device, DType dtype,
                             std::optional<bool> fuse_projections, const nn::SequenceParallel* sequence_parallel,
                             Precision precision) {
  FASTDIT_CHECK(fs::is_directory(dir), dir.string(), ": not a parity case directory");
  for (const char* f : {"inputs.safetensors", "outputs.safetensors"})
    FASTDIT_CHECK(fs::exists(dir / f), dir.string(), ": missing ", f);
  const SafetensorsFile outputs = SafetensorsFile::open(dir / "outputs.safetensors");

  trace::trace_config_from_env();  // a bad trace setting fails before the load
  LoadOptions options{device, dtype};
  options.fuse_projections = fuse_projections;
  options.sequence_parallel = sequence_parallel;
  options.precision = precision;
  LoadedTransformer loaded = load_transformer(dir / "transformer", options);
  DiTModel& model = *loaded.model;
  const ModelIO io = model.io();
  const auto references = reference_heads(outputs, dir / "outputs.safetensors", io, model.type_name());
  const ArgMap args = fs::exists(dir / "args.json") ? read_args_file(dir / "args.json", io) : ArgMap{};
  auto env_trace = trace::attach_from_env(model);
  const TensorMap inputs = read_model_inputs(dir / "inputs.safetensors", model, device);
  const TensorMap produced = model.forward(inputs, args);

  ParityResult result;
  result.model_type = model.type_name();
  result.pass = true;
  // The declared heads, then the optional ones this call returned (the case's args ask for
  // them): each needs its reference, and a reference the call did not return is an error.
  std::vector<std::string> judged = io.outputs;
  for (const auto& name : io.optional_outputs) {
    const bool returned = produced.count(name) > 0, referenced = references.count(name) > 0;
    FASTDIT_CHECK(returned == referenced, (dir / "outputs.safetensors").string(), ": ",
                  returned ? "no reference for the head '" + name + "' the forward returned"
                           : "a reference for the head '" + name + "', which the forward did not return with " +
                                 "these args");
    if (returned) judged.push_back(name);
  }
  for (const auto& name : judged) {
    const Tensor out = produced.at(name).to(Device::cpu(), DType::Float32);
    HeadResult head = judge_head(name, out, references.at(name), outputs, dtype, precision);
    result.pass = result.pass && head.pass;
    result.rel_l2 = std::isnan(head.rel_l2) || std::isnan(result.rel_l2) ? NAN : std::max(result.rel_l2, head.rel_l2);
    result.max_abs = std::isnan(head.max_abs) || std::isnan(result.max_abs) ? NAN : std::max(result.max_abs, head.max_abs);
    result.heads.push_back(std::move(head));
  }
  const bool one_process = !sequence_parallel || sequence_parallel->world_size() == 1;
  if (!result.pass && !one_process) result.divergence_report = "(run without --sp to name the first divergent module)\n";
  if (!result.pass && one_process && fs::exists(dir / "trace.jsonl")) {
    if (env_trace)
      for (auto& [name, module] : model.named_modules()) module->clear_forward_hooks();
    locate_divergence(dir / "trace.jsonl", model, inputs, args, dtype, result);
  }
  return result;
}

}  // namespace fastdit
