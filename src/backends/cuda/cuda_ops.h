// The CUDA kernels behind ops/: the same functions and contract as cpu_ops.h (ops.cc has
// validated every argument: inputs are contiguous and on one CUDA device, `out` is
// allocated with its final shape and dtype), so ops.cc dispatches each op in one line.
// Kernels take float32 / bfloat16 / float16 and compute in float32; GEMMs and attention
// accumulate in float32 (float32 GEMMs never use TF32). All work is queued on the
// device's stream (cuda_device.h) and returns without waiting for it.
//
// After the shared vocabulary come CUDA-only extras: fused kernels for the model fast
// paths and the attention backend choice.
#pragma once

#include <span>

#include "core/tensor.h"
#include "ops/ops.h"

namespace fastdit::cuda {

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

// scale already resolved (> 0); mask undefined, Bool or float, broadcastable to
// [B, H, Sq, Sk]. The backend is chosen by select_attention_backend below.
void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, float scale,
               Tensor& out);

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeStyle style, Tensor& out);

// Inputs share out's dtype and every dim but `dim` (normalised).
void concat(std::span<const Tensor> tensors, int64_t dim, Tensor& out);

void conv3d_patch(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);
void timestep_embedding(const Tensor& t, bool flip_sin_to_cos, float downscale_freq_shift,
                        float scale, float max_period, Tensor& out);

// ---- CUDA-only extras ----------------------------------------------------------------

// gelu_tanh(x · weightᵀ + bias) with the GELU fused into the GEMM (cuBLASLt GELU_BIAS):
// the FFN up-projection. bias may be undefined.
void linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);

// layer_norm(x) without affine, statistics in float32, then x̂ · (1 + scale) + shift in
// one pass. x [B, L, D]; shift and scale (any float dtype) are [B, 1, D] or [B, L, D].
void layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                         Tensor& out);

// The residual add and the norm after it in one pass: sum = residual + x (· gate), rounded
// to residual's dtype, and normed = the layer norm of that rounded sum with the optional
// affine weight/bias and modulation shift/scale. residual, x, sum and normed are
// contiguous [B, L, D] (sum and normed of residual's dtype); gate, shift and scale
// [B, 1, D] or [B, L, D]; weight and bias [D].
void add_layer_norm(const Tensor& residual, const Tensor& x, const Tensor& gate, const Tensor& weight,
                    const Tensor& bias, const Tensor& shift, const Tensor& scale, float eps, Tensor& sum,
                    Tensor& normed);

// Self-attention inputs from a fused q|k|v projection. qkv [B, S, 3D] contiguous;
// q, k, v [B, S, H, dh] contiguous outputs; cos/sin [S, dh] float32.
void qkv_norm_rope(const Tensor& qkv, const Tensor& norm_q, const Tensor& norm_k, float eps, const Tensor& cos,
                   const Tensor& sin, ops::RopeStyle style, Tensor& q, Tensor& k, Tensor& v);

// residual + x · gate when residual, x and out are [B, L, D] (contiguous) and gate is
// [B, 1, D] or [B, L, D]; returns false (nothing done) for other shapes.
bool gated_add_by_rows(const Tensor& residual, const Tensor& x, const Tensor& gate, Tensor& out);

enum class AttentionBackend {
  Cudnn,      // cuDNN fused SDPA: bf16/fp16, head dims multiples of 8 up to 256, no mask
  Flash,      // our flash kernel (mma.sync): bf16/fp16, head dims multiples of 8 up to 256, no mask
  Reference,  // simple kernel: any float dtype, any head dim, masks
};
const char* attention_backend_name(AttentionBackend backend);

// FASTDIT_ATTENTION_BACKEND (cudnn | flash | reference) when set and it can serve these
// tensors — a fastdit::Error naming why when it cannot — else our Hopper flash kernel where
// it is measured faster than cuDNN (head dim 128, 8,192 keys or more), else the first of
// cudnn, flash, reference that can.
AttentionBackend select_attention_backend(const Tensor& q, const Tensor& k, const Tensor& v,
                                          const Tensor& mask, float scale = 1.0f);
// attention() on a given backend; a fastdit::Error when it cannot serve these tensors.
void attention_with(AttentionBackend backend, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& mask, float scale, Tensor& out);

}  // namespace fastdit::cuda
