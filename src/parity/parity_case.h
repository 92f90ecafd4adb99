// Runs a parity case (DESIGN.md: transformer/, inputs.safetensors, outputs.safetensors,
// optional trace.jsonl) through the production loader and judges it against the bound.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "nn/sequence_parallel.h"
#include "trace/trace_diff.h"

namespace fastdit {

struct ParityResult {
  std::string model_type;
  Shape output_shape;
  double rel_l2 = 0;
  double max_abs = 0;
  double bound = 0;
  std::string bound_note;
  bool pass = false;
  // On a failure with a reference trace: the first module whose stats diverge.
  std::optional<std::string> first_divergence;
  std::string divergence_report;
};

struct Comparison {
  double rel_l2 = 0;
  double max_abs = 0;
};
// rel_l2 = ||out - ref|| / ||ref||, in double over float32 views; shapes must match.
Comparison compare_tensors(const Tensor& out, const Tensor& ref);

// fuse_projections unset: the loader's default for the device. sequence_parallel: the
// group this process is one rank of (null: one process); a failing case is then not
// traced (a rank's trace holds its shard only).
ParityResult run_parity_case(const std::filesystem::path& case_dir, Device device, DType dtype,
                             std::optional<bool> fuse_projections = std::nullopt,
                             const nn::SequenceParallel* sequence_parallel = nullptr);

}  // namespace fastdit
