// Env-gated activation trace (FastVideo's record format). When FASTDIT_TRACE_ACTIVATIONS
// is unset or "0" nothing is attached and modules pay one pointer test per output.
//
//   FASTDIT_TRACE_ACTIVATIONS  on unless unset or 0
//   FASTDIT_TRACE_LAYERS       regex searched in dotted module names; empty = all
//   FASTDIT_TRACE_STATS        abs_mean,sum,min,max,mean,std,shape,dtype (default abs_mean,sum)
//   FASTDIT_TRACE_OUTPUT       JSONL path, <pid> substituted, parents made, truncated at start
//   FASTDIT_TRACE_STEPS        comma list of step indices; empty = all
//   FASTDIT_TRACE_DUMP         folder: also write each traced tensor as safetensors
// The FASTVIDEO_TRACE_* names are read when the FASTDIT_ one is unset.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "nn/module.h"

namespace fastdit::trace {

enum class Stat { AbsMean, Sum, Min, Max, Mean, Std, Shape, DType };
Stat parse_stat(const std::string& name);  // throws listing the valid names
const char* stat_name(Stat stat);

struct TraceConfig {
  bool enabled = false;
  std::string layers;            // regex text; empty = all
  std::vector<Stat> stats{Stat::AbsMean, Stat::Sum};
  std::string output;            // resolved path
  std::set<int64_t> steps;       // empty = all
  std::string dump_dir;          // empty = no tensor dumps
};
// Reads and validates the environment (bad regex / stat / step list → fastdit::Error).
TraceConfig trace_config_from_env();

class ActivationTrace : public nn::ForwardHook,
                        public std::enable_shared_from_this<ActivationTrace> {
 public:
  explicit ActivationTrace(TraceConfig config);
  // Attaches to every module of `root` whose name matches; returns how many.
  size_t attach(nn::Module& root);
  void set_step(int64_t step) { step_ = step; }
  void on_output(const nn::Module& module, std::string_view tensor, const Tensor& value) override;
  const TraceConfig& config() const { return config_; }
  size_t records_written() const { return records_; }

 private:
  TraceConfig config_;
  std::regex pattern_;
  std::ofstream out_;
  int64_t step_ = 0;
  size_t records_ = 0;
  std::map<std::string, int64_t> dump_counts_;
};

// When the environment enables tracing: attaches to `root`, logs
// "activation trace attached to N modules (pattern=...)" on stderr and returns the
// trace; otherwise returns null.
std::shared_ptr<ActivationTrace> attach_from_env(nn::Module& root);

}  // namespace fastdit::trace
