// How the FP8 linear applies its per-row scales, and the pieces behind it (fp8.cu,
// linear.cc). cuda::linear_fp8 (cuda_ops.h) takes cuBLASLt's outer-vector scaling where
// this cuBLASLt offers it for the shape, else the own epilogue; the tests run both.
#pragma once

#include "core/tensor.h"

namespace fastdit::cuda {

enum class Fp8Scaling {
  OuterVector,  // cuBLASLt scales rows and columns (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F)
  Epilogue,     // an unscaled FP8 GEMM into bfloat16, then scale_fp8_product
};
const char* fp8_scaling_name(Fp8Scaling scaling);

// cuda::linear_fp8 with the scaling given; OuterVector where cuBLASLt has no algorithm
// for it is a fastdit::Error that says so.
void linear_fp8_with(Fp8Scaling scaling, const Tensor& x, const Tensor& weight, const Tensor& weight_scales,
                     const Tensor& bias, bool gelu_tanh, Tensor& out);

// y [m, n] bfloat16 in place: gelu_tanh?(y · x_scales[i] · weight_scales[j] + bias[j]),
// in float32, rounded once.
void scale_fp8_product(Tensor& y, const Tensor& x_scales, const Tensor& weight_scales, const Tensor& bias,
                       bool gelu_tanh);

}  // namespace fastdit::cuda
