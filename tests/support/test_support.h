// Helpers shared by the tests: seeded random tensors and paths into the source tree.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace fastdit::testing {

// Uniform in [lo, hi), float32 on the CPU, deterministic for a seed.
Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f);
// Gaussian [rows, cols] values (row-major) with `outliers` columns scaled by 50, as real
// activations' outlier channels are (the FP8 tests' operands).
std::vector<float> gaussian(int64_t rows, int64_t cols, uint64_t seed, int outliers, float sigma = 1.0f);
// How far `got` is from `ref`: ||got − ref|| / ||ref||, cosine similarity, and max |got − ref|
// over max |ref| (the FP8 and 8-bit attention bounds are stated in these three).
struct Accuracy {
  double rel_l2 = 0, cosine = 0, max_error_ratio = 0;
};
Accuracy accuracy(const std::vector<float>& got, const std::vector<float>& ref);
// Wall milliseconds per call of a queued device computation: one warm-up call, then the mean
// of `iterations`, the device synchronised around them.
double milliseconds_per_call(const std::function<void()>& call, int iterations = 10);
// Path under the source tree (FASTDIT_SOURCE_DIR, set by CTest; else the tree the tests
// were built from, so case discovery works when CTest lists the tests too).
std::filesystem::path source_path(const std::string& relative);
// The parity cases of one family under tests/fixtures/<family>/, by name, or of every
// family as "<family>/<case>".
std::vector<std::string> family_cases(const std::string& family);
std::vector<std::string> all_parity_cases();
// A fresh empty directory under the system temp dir (TMPDIR), removed with everything in
// it when the test process exits.
std::filesystem::path temp_dir(const std::string& tag);
// max |a - b| and ||a - b|| / ||b|| over float views.
double max_abs_diff(const Tensor& a, const Tensor& b);
double rel_l2(const Tensor& out, const Tensor& ref);
// The bound of a fused projection's forward (one GEMM over the concatenated weights) against
// the separate projections' forward on the CPU, as rel_l2: OpenBLAS's sgemm does not promise
// that an output column is the same whatever the GEMM's width (its tail kernels and its thread
// split depend on n: 1-ulp float32 differences were seen on an AMD EPYC), so the bound is a few
// units of the dtype's rounding (float32 1e-6, bfloat16 one ulp, 2^-7) against the rel_l2 of
// order 1 that a misplaced or reordered row gives. The weights themselves are checked exactly.
double fused_projection_bound(DType dtype);
// Builds the model of `<keys_dir>/<variant>.config.json` (no weights) and checks its
// parameters — names in order, shapes, load dtype policy, total count — against the
// reference dump `<variant>.keys.json` (tools/reference/dump_*_keys.py).
void expect_parameters_match_dump(const std::filesystem::path& keys_dir, const std::string& variant);
// A copy of a parity case (single-file weights) in a fresh temp dir, with element
// `element` of checkpoint tensor `weight` (float32) increased by `delta`.
std::filesystem::path perturbed_case(const std::filesystem::path& case_dir, const std::string& weight,
                                     int64_t element, float delta);

}  // namespace fastdit::testing
