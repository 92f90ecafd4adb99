// The one GEMM form the CUDA ops need, on cuBLASLt: row-major y[m, n] = x[m, k] · w[n, k]ᵀ
// (the PyTorch Linear layout, so no weight is ever transposed), float32 accumulation
// (never TF32), with the bias / GELU-tanh epilogue fused when cuBLASLt offers it.
#pragma once

#include <cstdint>
#include <optional>

#include "core/tensor.h"

namespace fastdit::cuda {

enum class GemmEpilogue { None, Bias, GeluTanh, GeluTanhBias };

struct GemmOperands {
  const void* x;       // [m, k]
  const void* weight;  // [n, k]
  void* y;             // [m, n]
  const void* bias;    // [n], or null
  DType dtype;         // of x, weight and y (of y alone with fp8)
  DType bias_dtype;
  int64_t m, n, k;
  int device;
  // FP8: x and weight are float8 e4m3fn, y is `dtype` (bfloat16), and y = (x_scales[i] ·
  // weight_scales[j]) · Σ x·w when the scales are given (cuBLASLt's outer-vector scaling:
  // float32 [m] and [n] on the device), else the unscaled sum. k a multiple of 16.
  bool fp8 = false;
  const float* x_scales = nullptr;
  const float* weight_scales = nullptr;
};

// Runs the GEMM with `wanted` fused and returns it, or — when cuBLASLt has no algorithm
// for that epilogue at these pointer alignments — runs the plain GEMM and returns
// GemmEpilogue::None, leaving bias and GELU to the caller. A GEMM cuBLASLt cannot run
// at all is a fastdit::Error. m, n, k > 0.
GemmEpilogue gemm_xwt(const GemmOperands& operands, GemmEpilogue wanted);
// The same, but a GEMM cuBLASLt has no algorithm for (an FP8 scaling mode this cuBLASLt
// or GPU lacks) returns nothing and runs nothing.
std::optional<GemmEpilogue> try_gemm_xwt(const GemmOperands& operands, GemmEpilogue wanted);

}  // namespace fastdit::cuda
