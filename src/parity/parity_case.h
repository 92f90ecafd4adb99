// Runs a parity case (DESIGN.md: transformer/, inputs.safetensors, optional args.json,
// outputs.safetensors with every output head, optional trace.jsonl) through the production loader and judges it against the bound.
#pragma once

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "loader/transformer_loader.h"
#include "nn/sequence_parallel.h"
#include "trace/trace_diff.h"

namespace fastdit {

// One output head against its reference.
struct HeadResult {
  std::string name;
  Shape shape;
  double rel_l2 = 0;
  double max_abs = 0;
  double bound = 0;
  std::string bound_note;
  bool pass = false;
};

struct ParityResult {
  std::string model_type;
  std::vector<HeadResult> heads;  // in the model's declared order
  double rel_l2 = 0;              // the worst head's (NaN when any head's is NaN)
  double max_abs = 0;
  bool pass = false;  // every head within its own bound
  // On a failure with a reference trace: the first module whose stats diverge.
  std::optional<std::string> first_divergence;
  std::string divergence_report;
};

struct Comparison {
  double rel_l2 = 0;
  double max_abs = 0;
  double cosine = 1;
  double psnr_db = INFINITY;
};
// Over every element, in double over float32 views; shapes must match:
//   rel_l2  = ||out - ref|| / ||ref|| (||out - ref|| when ref is all zero);
//   max_abs = max |out - ref|;
//   cosine  = <out, ref> / (||out|| ||ref||) (1 when both are all zero, 0 when one is);
//   psnr_db = 20 log10(max |ref| / RMSE), RMSE = sqrt(mean((out - ref)^2)): the peak is the
//             reference's largest magnitude (latents and activations have no fixed value
//             range); +inf when out equals ref.
// A NaN anywhere makes every figure NaN.
Comparison compare_tensors(const Tensor& out, const Tensor& ref);

// One line per head: "<name> <shape> rel_l2=… max_abs=… bound=… (<why this bound>) pass|FAIL".
std::string head_lines(const ParityResult& result);

// The parity cases under a family's fixture folder: each subfolder that holds
// inputs.safetensors, by name.
std::vector<std::string> discover_cases(const std::filesystem::path& family_dir);

// fuse_projections unset: the loader's default for the device. sequence_parallel: the
// group this process is one rank of (null: one process); a failing case is then not
// traced (a rank's trace holds its shard only). precision: LoadOptions::precision; under
// fp8 a head's bound is max(1.5 x the reference bf16 run's rel_l2, kFp8ForwardBound).
ParityResult run_parity_case(const std::filesystem::path& case_dir, Device device, DType dtype,
                             std::optional<bool> fuse_projections = std::nullopt,
                             const nn::SequenceParallel* sequence_parallel = nullptr,
                             Precision precision = Precision::Bf16);

// The rel_l2 an FP8 forward may have against the float32 reference (DESIGN.md, precision):
// each FP8 linear's output is off by ≈ 0.038 rel_l2 (e4m3 rounding of both operands), and
// a block adds its branches to a residual stream that carries the input unrounded, so a
// forward's heads stay within a few linears' worth of that: 0.1.
inline constexpr double kFp8ForwardBound = 0.1;

}  // namespace fastdit
