// 8-bit attention (precision fp8's self-attention) as plain functions: the quantization rule
// the CUDA kernels follow bit for bit, and a CPU emulation of the whole attention that the
// ops:: CPU backend and the tests use as the oracle.
//
// q [B, Sq, H, D], k [B, Sk, Hk, D], v [B, Sk, Hk, D] (Hk divides H), values as float32:
//   K smoothing   mean[b, h, c] = Σ_s k[b, s, h, c] / Sk, summed and divided in float64 (exact
//                 for bfloat16 inputs in any order, so the GPU's sum agrees), rounded to
//                 float32; k̃ = k − mean in float32. Subtracting a per-channel constant from
//                 every key adds q·mean to every score of a query row: softmax is unchanged.
//   balancing     per (batch, kv head, channel): a = sqrt(amax_s |k̃| / amax |q|) in float32
//                 (q's amax over the tokens of the query heads reading that kv head; 1 when
//                 either is 0); q̂ = q · a, k̂ = k̃ / a. q̂·k̂ = q·k̃: a channel whose keys are
//                 far larger than the rest (an outlier channel) shares its range with the
//                 queries instead of coarsening every other channel's INT8 steps.
//                 amax_s |k̃| = max(max_s k − mean, mean − min_s k), exactly so in float32.
//   Q̂ and k̂ (INT8) one scale per head and block of rows: kQueryBlock = 16 queries (the rows
//                 of one consumer warp), kBlock = 128 keys (a key tile of the kernel):
//                 scale = amax|x| / 127 in float32, 1 when 0; code = x / scale (float32
//                 quotient) rounded to nearest even, in [−127, 127].
//   V (FP8 e4m3)  one scale per head and channel over the whole sequence: amax / 448 (1 when
//                 0); code = e4m3(v / scale) (fp8.h's rounding and saturation).
//   scores        s = (Σ_c qcode·kcode) · qscale · kscale, exact in INT32 on the GPU;
//   P (FP8 e4m3)  p = 448 · exp(scale · (s − running row max)), quantized to e4m3: P̂;
//                 O = Σ P̂·V̂ / Σ P̂ · vscale (the normaliser sums the weights actually used,
//                 so they add up to 1 and a dominant key's rounding cancels).
// The GPU accumulates P·V per 128-key tile in the tensor cores and adds tiles in float32.
//
// Error model (DESIGN.md, Precision): INT8 steps of amax/127 put ≈ 1 % relative noise on the
// scores; e4m3's 3 mantissa bits put ≤ 2^-4 (RMS ≈ 2^-5.8) on each P and V element, which
// averages over the keys. Bounds against float32 attention: rel_l2 ≤ 0.05, cosine ≥ 0.9985,
// max error ≤ 0.1 · max|ref|.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace fastdit::attention8 {

inline constexpr int64_t kHeadDim = 128;    // the head dim the CUDA kernel serves
inline constexpr int64_t kBlock = 128;      // keys per scale (and query rows per kernel tile)
inline constexpr int64_t kQueryBlock = 16;  // queries per scale
inline constexpr float kInt8Max = 127.0f;
inline constexpr float kPGain = 448.0f;  // P is quantized as 448·p

struct Shape {
  int64_t batch = 0, q_len = 0, kv_len = 0, heads = 0, kv_heads = 0, dim = 0;
  int64_t q_blocks() const { return (q_len + kQueryBlock - 1) / kQueryBlock; }
  int64_t k_blocks() const { return (kv_len + kBlock - 1) / kBlock; }
};

// INT8 scale of a block whose largest magnitude is amax, and a value's code under it.
float int8_scale(float amax);
// The balancing factor a of a channel from its keys' and queries' amax.
float balance_factor(float k_amax, float q_amax);
int8_t encode_int8(float value, float scale);

struct Operands {
  Shape shape;
  std::vector<int8_t> q, k;     // [B, Sq, H, D], [B, Sk, Hk, D] (q̂ and k̂)
  std::vector<float> q_scales;  // [B, H, q_blocks] (16 queries each)
  std::vector<float> k_scales;  // [B, Hk, k_blocks]
  std::vector<float> k_mean;    // [B, Hk, D]
  std::vector<float> balance;   // [B, Hk, D]: a
  std::vector<uint8_t> v;       // [B, Sk, Hk, D] e4m3fn
  std::vector<float> v_scales;  // [B, Hk, D]
};

// The rule above; the spans hold the row-major tensors.
Operands quantize(std::span<const float> q, std::span<const float> k, std::span<const float> v, const Shape& shape);

// out [B, Sq, H, D] float32 from the quantized operands as the kernel computes it: scores
// in float64 from the codes, the softmax online over 128-key tiles (each tile's P against
// the running max, then quantized), sums in float64. The GPU differs by its float32 sums
// and exp2 (an e4m3 rounding of P may flip where they land on a boundary).
std::vector<float> attention(const Operands& operands, float scale);

}  // namespace fastdit::attention8
