#include "trace/activation_trace.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "core/files.h"
#include "loader/safetensors.h"

namespace fastdit::trace {

namespace {

constexpr std::pair<Stat, const char*> kStats[] = {
    {Stat::AbsMean, "abs_mean"}, {Stat::Sum, "sum"}, {Stat::Min, "min"},     {Stat::Max, "max"},
    {Stat::Mean, "mean"},        {Stat::Std, "std"}, {Stat::Shape, "shape"}, {Stat::DType, "dtype"}};

// FASTDIT_<name>, else FASTVIDEO_<name>; nullptr when neither is set.
const char* env(const std::string& name) {
  if (const char* v = std::getenv(("FASTDIT_" + name).c_str())) return v;
  return std::getenv(("FASTVIDEO_" + name).c_str());
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::regex compile_layers(const std::string& text) {
  try {
    return std::regex(text, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    FASTDIT_FAIL("FASTDIT_TRACE_LAYERS: invalid regex '", text, "': ", e.what());
  }
}

}  // namespace

Stat parse_stat(const std::string& name) {
  for (const auto& [stat, text] : kStats)
    if (name == text) return stat;
  FASTDIT_FAIL("unknown trace stat '", name, "' (valid: abs_mean, sum, min, max, mean, std, shape, dtype)");
}

const char* stat_name(Stat stat) {
  for (const auto& [s, text] : kStats)
    if (s == stat) return text;
  return "?";
}

TraceConfig trace_config_from_env() {
  TraceConfig c;
  const char* on = env("TRACE_ACTIVATIONS");
  c.enabled = on && std::string(on) != "0";
  if (!c.enabled) return c;
  if (const char* layers = env("TRACE_LAYERS")) c.layers = layers;
  compile_layers(c.layers);
  if (const char* stats = env("TRACE_STATS"); stats && *stats) {
    c.stats.clear();
    for (const auto& name : split_list(stats)) c.stats.push_back(parse_stat(name));
  }
  std::string output = "/tmp/fastdit_trace_<pid>.jsonl";
  if (const char* o = env("TRACE_OUTPUT"); o && *o) output = o;
  if (auto pos = output.find("<pid>"); pos != std::string::npos)
    output.replace(pos, 5, std::to_string(::getpid()));
  c.output = output;
  if (const char* steps = env("TRACE_STEPS")) {
    for (const auto& item : split_list(steps)) {
      char* end = nullptr;
      const long long step = std::strtoll(item.c_str(), &end, 10);
      FASTDIT_CHECK(end && *end == '\0' && step >= 0, "FASTDIT_TRACE_STEPS: '", item,
                    "' is not a step index (expected a comma list of non-negative integers)");
      c.steps.insert(step);
    }
  }
  if (const char* dump = env("TRACE_DUMP")) c.dump_dir = dump;
  return c;
}

ActivationTrace::ActivationTrace(TraceConfig config)
    : config_(std::move(config)), pattern_(compile_layers(config_.layers)) {
  // Streamed, so a run that dies keeps the records before it; the output rule otherwise
  // holds (core/files.h): no special file, no input of the run, a symbolic link followed.
  const std::filesystem::path path = check_output_path(config_.output, "FASTDIT_TRACE_OUTPUT");
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  out_.open(path, std::ios::out | std::ios::trunc);
  FASTDIT_CHECK(out_.good(), "FASTDIT_TRACE_OUTPUT: cannot write ", config_.output);
  if (!config_.dump_dir.empty()) std::filesystem::create_directories(config_.dump_dir);
}

size_t ActivationTrace::attach(nn::Module& root) {
  size_t count = 0;
  for (auto& [name, module] : root.named_modules()) {
    if (name.empty() || !std::regex_search(name, pattern_)) continue;
    module->add_forward_hook(shared_from_this());
    ++count;
  }
  return count;
}

void ActivationTrace::on_output(const nn::Module& module, std::string_view tensor, const Tensor& value) {
  if (!config_.steps.empty() && !config_.steps.count(step_)) return;
  const Tensor host = value.to(Device::cpu(), DType::Float32).contiguous();
  const float* p = host.data<float>();
  const int64_t n = host.numel();
  double sum = 0, abs_sum = 0, lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    const double v = p[i];
    sum += v;
    abs_sum += std::fabs(v);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double mean = n ? sum / n : NAN;
  double squares = 0;
  for (int64_t i = 0; i < n; ++i) squares += (p[i] - mean) * (p[i] - mean);
  nlohmann::ordered_json record;
  record["module"] = module.name();
  record["tensor"] = std::string(tensor);
  record["step"] = step_;
  for (Stat stat : config_.stats) {
    switch (stat) {
      case Stat::AbsMean: record["abs_mean"] = n ? abs_sum / n : NAN; break;
      case Stat::Sum: record["sum"] = sum; break;
      case Stat::Min: record["min"] = lo; break;
      case Stat::Max: record["max"] = hi; break;
      case Stat::Mean: record["mean"] = mean; break;
      case Stat::Std: record["std"] = n > 1 ? std::sqrt(squares / (n - 1)) : NAN; break;  // torch: unbiased
      case Stat::Shape: record["shape"] = value.shape(); break;
      case Stat::DType: record["dtype"] = torch_dtype_name(value.dtype()); break;
    }
  }
  out_ << record.dump() << '\n';
  out_.flush();
  ++records_;
  if (!config_.dump_dir.empty()) {
    const std::string key = module.name() + "." + std::string(tensor) + ".step" + std::to_string(step_);
    const int64_t call = dump_counts_[key]++;
    write_safetensors(std::filesystem::path(config_.dump_dir) / (key + ".call" + std::to_string(call) + ".safetensors"),
                      {{"value", value}}, {}, {.label = "FASTDIT_TRACE_DUMP"});
  }
}

std::shared_ptr<ActivationTrace> attach_from_env(nn::Module& root) {
  TraceConfig config = trace_config_from_env();
  if (!config.enabled) return nullptr;
  auto trace = std::make_shared<ActivationTrace>(std::move(config));
  const size_t count = trace->attach(root);
  std::cerr << "activation trace attached to " << count << " modules (pattern="
            << (trace->config().layers.empty() ? "<all>" : trace->config().layers) << ") -> "
            << trace->config().output << "\n";
  return trace;
}

}  // namespace fastdit::trace
