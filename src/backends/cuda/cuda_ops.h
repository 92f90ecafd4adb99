// The CUDA kernels behind ops/: the shared kernel vocabulary of backends/backend_ops.def,
// declared from that one list as for the CPU (the same functions and contract), so ops.cc
// dispatches each op in one line.
// Kernels take float32 / bfloat16 / float16 and compute in float32; GEMMs and attention
// accumulate in float32 (float32 GEMMs never use TF32). All work is queued on the
// device's stream (cuda_device.h) and returns without waiting for it.
//
// After the shared vocabulary come CUDA-only extras: fused kernels for the model fast
// paths and the attention backend choice.
#pragma once

#include <span>
#include <string>

#include "core/tensor.h"
#include "ops/ops.h"

namespace fastdit::cuda {

#define FASTDIT_BACKEND_OP(name, parameters) void name parameters;
#include "backends/backend_ops.def"
#undef FASTDIT_BACKEND_OP

// ---- CUDA-only extras ----------------------------------------------------------------

// gelu_tanh(x · weightᵀ + bias) with the GELU fused into the GEMM (cuBLASLt GELU_BIAS):
// the FFN up-projection. bias may be undefined.
void linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out);

// ops::quantize_fp8_rows: x [..., K] float -> values [..., K] float8_e4m3fn and scales
// [...] float32, the rule of ops/fp8.h bit for bit.
void quantize_fp8_rows(const Tensor& x, Tensor& values, Tensor& scales);
// ops::linear_fp8 after x's quantization (GELU-tanh fused when gelu_tanh): an FP8 cuBLASLt
// GEMM of x (quantize_fp8_rows: values [..., K], scales [...]) against weight [N, K]
// float8_e4m3fn, scales and bias applied, out [..., N] bfloat16 (fp8.h: how the scales are
// applied).
void linear_fp8(const ops::Fp8Rows& x, const Tensor& weight, const Tensor& weight_scales, const Tensor& bias,
                bool gelu_tanh, Tensor& out);

// ops::attention_8bit's kernels (attention_int8_sm90.cu). The quantized operands:
//   q, k     int8 [B, S, H, 128] (k smoothed), scales [B, H, ceil(S / 128)] float32;
//   v_t      float8_e4m3fn [B, Hk, 128, Sk rounded up to 128]: V transposed, keys in the
//            order attention8_permuted_key gives (position p holds that key; padding 0);
//   v_scales [B, Hk, 128] float32.
struct Attention8Operands {
  Tensor q, k, v_t, q_scales, k_scales, v_scales;
};
std::string attention_8bit_refusal(const Tensor& q, const Tensor& k, const Tensor& v);
Attention8Operands quantize_attention_8bit(const Tensor& q, const Tensor& k, const Tensor& v);
void attention_8bit(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor& out);
int attention8_permuted_key(int position);
// The kernel's schedule (FASTDIT_ATTENTION8_SCHEDULE): "ping-pong" (the default: the two
// consumer warpgroups take turns at issuing their MMAs, each overlapping its softmax with
// its own P·V) or "overlap" (no turns). Both compute the same numbers.
bool attention_8bit_ping_pong();

// layer_norm(x) without affine (rms: rms_norm(x, weight), weight optional), statistics in
// float32, then x̂ · (1 + scale) + shift in one pass, written as out's dtype. x [..., L, D]
// contiguous; shift and scale (any float dtype) are [..., 1, D] or [..., L, D].
// each_step (out of x's dtype): the norm rounded first, then ops::modulate's Rounding::EachStep.
void norm_modulate(const Tensor& x, const Tensor& weight, const Tensor& shift, const Tensor& scale, float eps,
                   bool rms, bool each_step, Tensor& out);

// The residual add and the norm after it in one pass: sum = residual + x (· gate), rounded
// to residual's dtype, and normed = the layer norm of that rounded sum with the optional
// affine weight/bias and modulation shift/scale (rms: the RMS norm, no bias). residual, x,
// sum and normed are contiguous [..., L, D] (sum and normed of residual's dtype); gate,
// shift and scale [..., 1, D] or [..., L, D]; weight and bias [D].
// each_step: x · gate rounded before the add, the norm rounded before the modulation's rounded
// steps (ops::Rounding::EachStep).
void add_layer_norm(const Tensor& residual, const Tensor& x, const Tensor& gate, const Tensor& weight,
                    const Tensor& bias, const Tensor& shift, const Tensor& scale, float eps, bool rms, bool each_step,
                    Tensor& sum, Tensor& normed);

// Self-attention inputs from a fused q|k|v projection. qkv [B, S, 3D], rows evenly spaced
// (backends/row_layout.h: contiguous, or the q|k|v columns of a wider projection's output);
// q, k, v [B, S, H, dh] contiguous outputs; cos/sin [S, dh] float32. per_head: norms over
// each head's dh values (weights [dh]), the row rounded before the weight when
// round_before_weight (weights of qkv's dtype), else the weighted product rounded once;
// false (nothing done) where the per-head kernel cannot serve the shapes or alignment.
bool qkv_norm_rope(const Tensor& qkv, const Tensor& norm_q, const Tensor& norm_k, float eps, const Tensor& cos,
                   const Tensor& sin, ops::RopeStyle style, bool per_head, bool round_before_weight, Tensor& q,
                   Tensor& k, Tensor& v);

// residual + x · gate when residual, x and out are [..., L, D] (contiguous) and gate is
// [..., 1, D] or [..., L, D] (per item, per frame, per token); returns false (nothing
// done) for other shapes.
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
