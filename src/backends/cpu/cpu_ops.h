// The CPU kernels behind ops/. ops.cc has already validated every argument: inputs are
// contiguous, on the CPU, of the dtypes the op accepts, and `out` is allocated
// (contiguous, final shape and dtype). Kernels compute in float32: bfloat16 / float16
// inputs are widened on load and results rounded to nearest even into out's dtype.
#pragma once

#include <span>

#include "core/tensor.h"
#include "ops/ops.h"

namespace fastdit::cpu {

void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out);
void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);

void gelu(const Tensor& x, ops::GeluApprox approx, Tensor& out);
void silu(const Tensor& x, Tensor& out);
void sigmoid(const Tensor& x, Tensor& out);
void swiglu(const Tensor& x, Tensor& out);  // x [..., 2N], out [..., N]
void cos(const Tensor& x, Tensor& out);
void sin(const Tensor& x, Tensor& out);
void scale(const Tensor& x, float factor, Tensor& out);
void clamp(const Tensor& x, float lo, float hi, Tensor& out);

// Inputs broadcast against out's shape (NumPy rules, already checked).
void add(const Tensor& a, const Tensor& b, Tensor& out);
void sub(const Tensor& a, const Tensor& b, Tensor& out);
void mul(const Tensor& a, const Tensor& b, Tensor& out);
void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& out);
void gated_add(const Tensor& residual, const Tensor& x, const Tensor& gate, Tensor& out);

// dim already normalised to [0, rank).
void softmax(const Tensor& x, int64_t dim, Tensor& out);

// scale already resolved (> 0); mask undefined, Bool or float, broadcastable to [B, H, Sq, Sk].
void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, float scale,
               Tensor& out);

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeStyle style, Tensor& out);

// Inputs share out's dtype and every dim but `dim` (normalised).
void concat(std::span<const Tensor> tensors, int64_t dim, Tensor& out);

void conv3d_patch(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);
void timestep_embedding(const Tensor& t, bool flip_sin_to_cos, float downscale_freq_shift,
                        float scale, float max_period, Tensor& out);

}  // namespace fastdit::cpu
