// The op vocabulary a DiT is written in. Every op dispatches on the device of its
// inputs (all inputs of one op live on one device) and returns a new contiguous
// tensor. Float ops accept float32, bfloat16 and float16 inputs, compute in float32
// (CPU backend) and return the dtype of their first tensor input unless stated.
// Optional tensors are passed as an undefined Tensor{}. Inputs may have any strides.
// Bad arguments (ranks, shapes, dtypes, devices) throw fastdit::Error naming the op.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace fastdit::ops {

enum class GeluApprox { None, Tanh };

// ---- GEMM ----------------------------------------------------------------------------
// y[..., N] = x[..., K] · weight[N, K]ᵀ + bias[N]. The PyTorch Linear layout.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

// gelu(x · weightᵀ + bias): a feed-forward up-projection, fused into the GEMM where the
// backend can (cuBLASLt's GELU_BIAS epilogue is the tanh form).
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias, GeluApprox approx);

// ---- FP8 (e4m3) GEMM -----------------------------------------------------------------
// The opt-in FP8 path of the block linears (LoadOptions::precision): operands quantized
// per row to float8 e4m3fn by the rule of ops/fp8.h, products accumulated in float32.

// x [..., K] (float32, bfloat16 or float16) quantized per row: values [..., K]
// float8_e4m3fn and scales [...] float32 with values · scales ≈ x (ops/fp8.h).
struct Fp8Rows {
  Tensor values;
  Tensor scales;
};
Fp8Rows quantize_fp8_rows(const Tensor& x);

// y[..., N] = x̂ · (weight · weight_scales)ᵀ + bias, then GELU when asked: x [..., K]
// bfloat16, quantized per row on the fly (x̂); weight [N, K] float8_e4m3fn with
// weight_scales [N] float32 (quantize_fp8_rows of the bfloat16 weight); bias [N]; K and N
// multiples of 16 (what cuBLASLt's FP8 GEMMs take). y is bfloat16. On CUDA an FP8 GEMM
// of cuBLASLt (bias / GELU-tanh fused where it can); on the CPU the exact emulation
// fp8::linear (a test oracle).
Tensor linear_fp8(const Tensor& x, const Tensor& weight, const Tensor& weight_scales, const Tensor& bias = {},
                  std::optional<GeluApprox> gelu = std::nullopt);

// ---- normalisation -------------------------------------------------------------------
// Over the last dim. weight and bias [D] are each optional (undefined = no scale / no shift).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
// layer_norm(x) without affine, times (1 + scale), plus shift, all in float32 and rounded
// once to out_dtype (the adaLN modulation of DiT blocks). shift/scale broadcast to x: per
// item [B, 1, D], per token [B, L, D], or per frame [B, T, 1, D] against x [B, T, N, D] (a
// frame's N tokens share its row), each served by the fused row kernel on CUDA.
Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                           DType out_dtype);
// How modulate, gated_add and the norm ops round. Once: float32 math, one rounding to the output dtype.
// EachStep: every step rounded to the output dtype, as the chain of separate ops a reference
// runs in that dtype gives (x·(1 + scale) + shift: 1 + scale, the product and the sum;
// residual + x·gate: the product and the sum), bit for bit, in the same one pass.
enum class Rounding { Once, EachStep };
// x * rsqrt(mean(x²) + eps) [* weight]; statistics in float32. Rounding::EachStep rounds the
// normalised row to x's dtype before the weight multiply, as a reference's
// `norm(x.float()).type_as(x) * weight` in that dtype does (weight then of x's dtype).
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps, Rounding rounding = Rounding::Once);
// rms_norm(x, weight) (weight optional) times (1 + scale), plus shift, in float32 and
// rounded once to out_dtype; shift/scale as for layer_norm_modulate. Rounding::EachStep
// (out_dtype = x's dtype): modulate(rms_norm(x, weight), shift, scale, out_dtype,
// Rounding::EachStep) in one pass, the norm rounded before the modulation's rounded steps.
Tensor rms_norm_modulate(const Tensor& x, const Tensor& weight, const Tensor& shift, const Tensor& scale, float eps,
                         DType out_dtype, Rounding rounding = Rounding::Once);

// ---- activations ---------------------------------------------------------------------
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::None);
Tensor silu(const Tensor& x);
// 1 / (1 + exp(-x)) (float32 math, x's dtype): per-head attention gates.
Tensor sigmoid(const Tensor& x);
// diffusers SwiGLU after its projection: x [..., 2N] -> value · silu(gate) [..., N] with
// value = x[..., :N] and gate = x[..., N:]. silu(gate) is rounded to x's dtype before the
// product, as the reference's separate ops in that dtype give.
Tensor swiglu(const Tensor& x);

// ---- elementwise with broadcasting (NumPy rules) ---------------------------------------
// add, sub, mul, modulate and gated_add broadcast all their inputs together (the output
// takes the joint shape) and return float32 when the inputs' float dtypes differ, else
// the common dtype. scale keeps x's dtype.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float factor);
// cos(x), sin(x) elementwise (float32 math, x's dtype).
Tensor cos(const Tensor& x);
Tensor sin(const Tensor& x);
// min(max(x, lo), hi), in x's dtype (torch's clip: Flux's float16 residual guard).
Tensor clamp(const Tensor& x, float lo, float hi);
// x * (1 + scale) + shift, scale and shift broadcast against x. out_dtype (default: the
// promoted dtype) rounds the float32 result once, so a cast after the op is fused in.
Tensor modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                std::optional<DType> out_dtype = std::nullopt, Rounding rounding = Rounding::Once);
// residual + x * gate, gate broadcast against x; out_dtype and rounding as for modulate.
Tensor gated_add(const Tensor& residual, const Tensor& x, const Tensor& gate,
                 std::optional<DType> out_dtype = std::nullopt, Rounding rounding = Rounding::Once);

// residual += x * gate in place (float32 math, rounded once to residual's dtype), x and
// gate broadcast against residual, which must be contiguous: a residual stream updated
// piece by piece (a view of some of its rows) without a new tensor per piece. The one op
// that writes into an argument.
void gated_add_(Tensor& residual, const Tensor& x, const Tensor& gate);

// The residual stream's add-then-normalise in one pass over it:
//   sum = residual + x · gate (gate optional), in float32, rounded once to residual's dtype;
//   normed = layer_norm(sum, weight, bias, eps), weight and bias each optional, or, given
//            shift and scale (and no weight or bias), layer_norm_modulate(sum, shift, scale,
//            eps, residual's dtype); with NormKind::Rms the RMS norm instead (rms_norm(sum,
//            weight, eps), no bias, or rms_norm_modulate(sum, {}, shift, scale, eps, dtype)).
// The same numbers as those ops in sequence (the norm reads the rounded sum). x, gate,
// shift and scale broadcast against residual, whose shape and dtype both outputs take.
// Rounding::EachStep: the sum as gated_add's EachStep (x · gate rounded before the add) and
// the modulation as modulate's EachStep after the norm rounded to residual's dtype.
struct AddNorm {
  Tensor sum, normed;
};
enum class NormKind { Layer, Rms };
AddNorm add_layer_norm(const Tensor& residual, const Tensor& x, const Tensor& gate, const Tensor& weight,
                       const Tensor& bias, const Tensor& shift, const Tensor& scale, float eps,
                       NormKind kind = NormKind::Layer, Rounding rounding = Rounding::Once);

// ---- reductions ----------------------------------------------------------------------
Tensor softmax(const Tensor& x, int64_t dim = -1);

// ---- attention -----------------------------------------------------------------------
// q [B, Sq, H, D], k [B, Sk, Hkv, D], v [B, Sk, Hkv, Dv] -> [B, Sq, H, Dv], Hkv dividing H:
// query head h attends with key/value head h / (H / Hkv) (grouped-query attention; the
// repeat of K and V is never made). softmax(q·kᵀ · scale + mask) · v with a numerically
// stable blocked softmax.
// mask (optional) broadcasts to [B, H, Sq, Sk]: Bool (true = attend) or float (added).
// scale <= 0 means 1/sqrt(D). q, k, v share a dtype; a query row whose keys are all
// masked out yields zeros (as PyTorch's SDPA math path does since 2.5). `op` is the name a
// KernelObserver sees (a benchmark's per-op split tells self- from cross-attention by it).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask = {},
                 float scale = 0.0f, const char* op = "attention");

// 8-bit attention (precision fp8's self-attention; the rule and its error model in
// ops/attention_8bit.h): INT8 Q·Kᵀ with K mean-smoothing, FP8 P·V, float32 softmax. q
// [B, Sq, H, 128], k and v [B, Sk, Hkv, 128], bfloat16 or float16, no mask; the output has
// q's dtype. On CUDA the sm_90a kernel (attention_8bit_refusal says where it cannot serve);
// on the CPU the emulation of ops/attention_8bit.h (an oracle: float64, slow).
Tensor attention_8bit(const Tensor& q, const Tensor& k, const Tensor& v, float scale = 0.0f);
// Why attention_8bit cannot serve these inputs on their device; empty when it can.
std::string attention_8bit_refusal(const Tensor& q, const Tensor& k, const Tensor& v);

// Whether self-attention runs attention_8bit where it serves: the calling thread's setting,
// on while a model loaded with precision fp8 runs its forward (DiTModel::forward). The scope
// restores the previous setting.
bool quantized_attention();
class QuantizedAttentionScope {
 public:
  explicit QuantizedAttentionScope(bool enabled);
  ~QuantizedAttentionScope();
  QuantizedAttentionScope(const QuantizedAttentionScope&) = delete;
  QuantizedAttentionScope& operator=(const QuantizedAttentionScope&) = delete;

 private:
  bool previous_;
};

// ---- rotary embedding ----------------------------------------------------------------
enum class RopeStyle {
  Interleaved,  // pairs (x[2i], x[2i+1]); cos/sin hold each angle twice in a row
  SplitHalf,    // pairs (x[i], x[i + D/2]); cos/sin = cat(f, f)
};
// x [B, S, H, D] with D even, cos/sin [S, R] with R even, R <= D (float32 usually; any
// float dtype): the first R dims of each head are rotated, out = x·cos + rotate(x)·sin in
// float32, pairs formed within those R dims by the style (SplitHalf: (x[i], x[i + R/2]));
// dims R… pass through (partial RoPE, as Stable Audio rotates half of each head). Returned
// in x's dtype.
// The table may also differ per head and per batch item: cos/sin [S, H, R] (head h rotated
// by its own rows, LTX-2's per-head frequency slices) or [B or 1, S, H or 1, R].
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style);

// Where row (b, s, h) of a rope table starts: b·batch + s·seq + h·head (a stride of 0
// broadcasts), rotary = R. The kernels read every table shape ops::rope accepts through it.
struct RopeTableLayout {
  int64_t batch = 0, seq = 0, head = 0, rotary = 0;
};
inline RopeTableLayout rope_table_layout(const Tensor& cos) {
  const int64_t r = cos.size(-1);
  switch (cos.dim()) {
    case 2: return {0, r, 0, r};
    case 3: return {0, cos.size(1) * r, r, r};
    default: {
      const int64_t heads = cos.size(2);
      return {cos.size(0) == 1 ? 0 : cos.size(1) * heads * r, heads * r, heads == 1 ? 0 : r, r};
    }
  }
}

// Self-attention inputs from a fused q|k|v projection: qkv [B, S, 3D] -> q, k, v
// [B, S, H, D/H] with q = rope(rms_norm(qkv[..., :D], norm_q)), k likewise with norm_k,
// v = qkv[..., 2D:]. QkNorm::AcrossHeads: the norms run across all heads (weights [D]);
// QkNorm::PerHead: each head's D/H values are normalised alone (weights [D/H] of qkv's
// dtype) and rounded before the weight (rms_norm's Rounding::EachStep, a per-head
// RMSNorm_FP32); QkNorm::PerHeadOnce: each head alone, the weight (any float dtype) applied
// in float32 and the product rounded once (torch.nn.RMSNorm per head: Flux). Float32
// statistics, rounded to qkv's dtype before the rotation, exactly as the separate ops give;
// qkv may be the q|k|v columns of a wider projection (rows evenly spaced, read in place on
// CUDA); the CUDA backend does it in one pass. cos/sin rotate whole heads:
// [S, D/H], or per head and item as ops::rope takes them ([S, H, D/H], [B or 1, S, H or 1,
// D/H]: LTX-2's per-head frequency slices).
struct QKV {
  Tensor q, k, v;
};
enum class QkNorm { AcrossHeads, PerHead, PerHeadOnce };
QKV qkv_norm_rope(const Tensor& qkv, const Tensor& norm_q, const Tensor& norm_k, float eps, int64_t heads,
                  const Tensor& cos, const Tensor& sin, RopeStyle style, QkNorm norm = QkNorm::AcrossHeads);

// ---- layout --------------------------------------------------------------------------
// Any dtype. Each returns new storage, even where a view would do (an identity
// permute), except cast. concat needs one dtype and device for all inputs.
Tensor permute(const Tensor& x, std::span<const int64_t> dims);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor concat(std::span<const Tensor> tensors, int64_t dim);
std::vector<Tensor> split(const Tensor& x, std::span<const int64_t> sizes, int64_t dim);
// Any dtype conversion, on the tensor's device. Like PyTorch's .to(), a contiguous x
// that already has the dtype is returned itself, so model code can cast freely.
Tensor cast(const Tensor& x, DType dtype);

// ---- embeddings ----------------------------------------------------------------------
// Convolution whose stride equals its kernel (patch embedding).
// x [B, C, T, H, W], weight [O, C, kt, kh, kw], bias [O] (optional) -> [B, O, T/kt, H/kh, W/kw].
// T, H, W must be multiples of kt, kh, kw (PyTorch would silently drop the remainder).
Tensor conv3d_patch(const Tensor& x, const Tensor& weight, const Tensor& bias);
// diffusers get_timestep_embedding: t [N] (any numeric dtype) -> [N, dim] float32.
// freq_k = exp(-ln(max_period) * k / (dim/2 - downscale_freq_shift)), arg = t*freq*scale,
// out = [sin | cos], or [cos | sin] with flip_sin_to_cos; odd dim gets a zero last column.
Tensor timestep_embedding(const Tensor& t, int64_t dim, bool flip_sin_to_cos,
                          float downscale_freq_shift, float scale = 1.0f,
                          float max_period = 10000.0f);

}  // namespace fastdit::ops

namespace fastdit::ops {

// ---- accounting and test data ---------------------------------------------------------
// Counts the arithmetic of linear (2·M·N·K) and attention (4·B·H·Sq·Sk·D) while active;
// benchmarks use it to turn time into TFLOP/s.
struct FlopCount {
  double linear = 0;
  double attention = 0;
  double total() const { return linear + attention; }
};
void start_flop_count();
FlopCount stop_flop_count();

// Sees every kernel launch of the op layer, named by its op ("linear", "attention", …):
// benchmarks split a forward's time into components with it. At most one at a time;
// with none set a launch pays one pointer test. Copies and casts done by Tensor itself
// (to, contiguous) are not kernels of this layer and are not seen.
class KernelObserver {
 public:
  virtual ~KernelObserver() = default;
  virtual void before_kernel(const char* op, Device device) = 0;
  virtual void after_kernel(const char* op, Device device) = 0;
};
void set_kernel_observer(KernelObserver* observer);  // null detaches

// A CPU tensor of uniform values in [lo, hi), the same for a given seed whatever the
// thread count (counter-based generator).
Tensor random_uniform(const Shape& shape, DType dtype, uint64_t seed, float lo, float hi);

}  // namespace fastdit::ops
