// 8-bit attention for Hopper (sm_90a) at head dim 128: INT8 Q·Kᵀ with K mean-smoothing and
// per-block scales, FP8 (e4m3) P·V with per-channel V scales, float32 softmax and a float32
// sum of the per-tile P·V products. The rule is ops/attention_8bit.h's; this file is its GPU
// form, in five kernels:
//   *_stats           per (batch, kv head, channel): Σ_s k (float64, exact for bfloat16 in any
//                     order), max k, max −k, amax |v|, amax |q| over the group's query heads,
//                     atomics over sequence chunks;
//   quantize_blocks   Q · a, or (K − mean) / a, to INT8 per (batch, head, 128 rows), a the
//                     channel's balance: a warp per 16 rows, 4 channels a lane, one block amax;
//   quantize_values   V to e4m3 per channel, stored transposed per 128-key tile, [B, Hk, D,
//                     Sk rounded up to 128], keys permuted within each group of 16 (below);
//   attention_int8    the attention itself, the bfloat16 Hopper kernel's structure
//                     (attention_flash_sm90.cu): a producer warp issuing TMA copies into a
//                     ring of K and Vᵀ slots, two consumer warpgroups of 64 query rows each.
// Per key tile j a consumer issues S_j = Q·K_jᵀ (wgmma m64n128k32 s32.s8.s8, both operands
// K-major in shared memory) and P_{j−1}·V_{j−1} (m64n136k32 f32.e4m3.e4m3, P from registers,
// Vᵀ K-major: 8-bit wgmma reads no MN-major operand, hence the transposed V; the 8 extra
// columns are a row of ones that sums each row's quantized P, the output's normaliser), runs the
// softmax of S_j while P·V runs, then adds the tile's product into O in float32 (the tensor
// cores' FP8 accumulator keeps fewer mantissa bits than float32, so O is never accumulated
// there across tiles).
//
// Why V's keys are permuted: the S accumulator gives thread t (of a quad) keys 2t, 2t+1,
// 8+2t, 9+2t of each 16-key group, while an 8-bit A fragment wants k indices 4t..4t+3 in a
// register. Packing the thread's own four probabilities into one register makes k index
// 4t+i stand for key σ(4t+i) = 2t + (i & 1) + 8·(i >> 1); V's rows are stored in that order.
#include <cuda.h>
#include <cuda_fp8.h>
#include <cudaTypedefs.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "backends/cuda/attention.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernel_common.cuh"
#include "backends/cuda/sm90_pipeline.cuh"
#include "ops/attention_8bit.h"

namespace fastdit::cuda {
namespace {

using namespace sm90;

constexpr int kDim = static_cast<int>(attention8::kHeadDim);
constexpr int kBlock = static_cast<int>(attention8::kBlock);  // query rows / keys per tile and scale block
constexpr int kConsumerWarps = 8;
constexpr int kThreads = 128 + kConsumerWarps * 32;
constexpr int kProducerRegisters = 24, kConsumerRegisters = 240;
constexpr int kStages = 3;
constexpr uint32_t kTileBytes = kBlock * kDim;  // one Q, K or Vᵀ tile of 8-bit codes: 16 KB
constexpr uint32_t kKOffset = kTileBytes;
// A Vᵀ slot is the tile's 128 channel rows and 8 more, constant: a row of e4m3 ones and seven
// of zeros, so the P·V MMA (N = 136) also sums each row's quantized P (the output's normaliser).
constexpr uint32_t kVSlotBytes = kTileBytes + 8 * kBlock;
constexpr uint32_t kVOffset = kKOffset + kStages * kTileBytes;
constexpr uint32_t kBarrierOffset = kVOffset + kStages * kVSlotBytes;
constexpr int kBarriers = 1 + 4 * kStages;
constexpr size_t kSharedBytes = kBarrierOffset + kBarriers * 8 + 1024;

// ---- quantization ------------------------------------------------------------------------

constexpr int kStatsThreads = 256, kStatsChunk = 512;  // rows of one (batch, head) per block

// Per-channel statistics of one (batch, kv head), filled by atomics over sequence chunks:
// Σ k (float64: exact for bfloat16 inputs, so any order gives the CPU's sum), max k and
// max −k (floats as order-preserving ints), amax |v| and, over the query heads reading the
// kv head, amax |q| (non-negative floats: their bits order as the values).
struct ChannelStats {
  double* k_sum;
  int* k_max;
  int* k_neg_max;
  unsigned* v_amax;
  unsigned* q_amax;
};

__device__ __forceinline__ int ordered(float f) {
  const int i = __float_as_int(f);
  return i >= 0 ? i : i ^ 0x7fffffff;
}
__device__ __forceinline__ float unordered(int i) { return __int_as_float(i >= 0 ? i : i ^ 0x7fffffff); }

template <class T>
__global__ void __launch_bounds__(kStatsThreads)
    key_value_stats_kernel(const T* __restrict__ k, const T* __restrict__ v, ChannelStats stats, int seq, int heads) {
  __shared__ double sums[kStatsThreads];
  __shared__ float maxima[3][kStatsThreads];
  const int bh = blockIdx.x, b = bh / heads, h = bh % heads;
  const int c = threadIdx.x % kDim, lane_row = threadIdx.x / kDim;  // 2 rows at a time
  const int first = blockIdx.y * kStatsChunk, last = min(seq, first + kStatsChunk);
  double sum = 0.0;
  float k_max = -INFINITY, k_neg_max = -INFINITY, v_amax = 0.0f;
  for (int s = first + lane_row; s < last; s += kStatsThreads / kDim) {
    const int64_t i = ((int64_t{b} * seq + s) * heads + h) * kDim + c;
    const float x = to_float(k[i]);
    sum += static_cast<double>(x);
    k_max = fmaxf(k_max, x);
    k_neg_max = fmaxf(k_neg_max, -x);
    v_amax = fmaxf(v_amax, fabsf(to_float(v[i])));
  }
  sums[threadIdx.x] = sum;
  maxima[0][threadIdx.x] = k_max;
  maxima[1][threadIdx.x] = k_neg_max;
  maxima[2][threadIdx.x] = v_amax;
  __syncthreads();
  if (lane_row == 0 && first < last) {
    const int o = threadIdx.x + kDim;
    const int64_t at = int64_t{bh} * kDim + c;
    atomicAdd(&stats.k_sum[at], sum + sums[o]);
    atomicMax(&stats.k_max[at], ordered(fmaxf(k_max, maxima[0][o])));
    atomicMax(&stats.k_neg_max[at], ordered(fmaxf(k_neg_max, maxima[1][o])));
    atomicMax(&stats.v_amax[at], __float_as_uint(fmaxf(v_amax, maxima[2][o])));
  }
}

template <class T>
__global__ void __launch_bounds__(kStatsThreads)
    query_stats_kernel(const T* __restrict__ q, ChannelStats stats, int seq, int heads, int group) {
  __shared__ float maxima[kStatsThreads];
  const int bh = blockIdx.x, b = bh / heads, h = bh % heads;
  const int c = threadIdx.x % kDim, lane_row = threadIdx.x / kDim;
  const int first = blockIdx.y * kStatsChunk, last = min(seq, first + kStatsChunk);
  float amax = 0.0f;
  for (int s = first + lane_row; s < last; s += kStatsThreads / kDim)
    amax = fmaxf(amax, fabsf(to_float(q[((int64_t{b} * seq + s) * heads + h) * kDim + c])));
  maxima[threadIdx.x] = amax;
  __syncthreads();
  if (lane_row == 0)
    atomicMax(&stats.q_amax[(int64_t{b} * (heads / group) + h / group) * kDim + c],
              __float_as_uint(fmaxf(amax, maxima[threadIdx.x + kDim])));
}

__device__ __forceinline__ int8_t int8_code(float value, float scale) {
  const int q = __float2int_rn(__fdiv_rn(value, scale));
  return static_cast<int8_t>(max(-127, min(127, q)));
}

constexpr int kQuantizeThreads = 256, kWarpsPerBlock = kQuantizeThreads / 32, kRowsPerWarp = kBlock / kWarpsPerBlock;
static_assert(kRowsPerWarp == attention8::kQueryBlock, "a warp's rows are one query scale block");

// x [B, S, H, 128] → codes (same layout) and scales per the rule ([B, H, ceil(S / 128)] for
// keys, [B, H, 8 · ceil(S / 128)] for queries, 16 rows each):
// keys (kKeys) become (k − mean) / a, queries q · a, a the channel's balance factor, from the
// stats of kv head h / group over kv_len keys.
template <class T, bool kKeys>
__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_blocks_kernel(const T* __restrict__ x, ChannelStats stats, int8_t* __restrict__ codes,
                           float* __restrict__ scales, int seq, int heads, int group, int kv_len) {
  __shared__ float scratch[32];
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float mean[4], balance[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int64_t at = (int64_t{b} * (heads / group) + h / group) * kDim + 4 * lane + e;
    mean[e] = static_cast<float>(__ddiv_rn(stats.k_sum[at], kv_len));
    const float k_amax = fmaxf(__fsub_rn(unordered(stats.k_max[at]), mean[e]),
                               __fadd_rn(mean[e], unordered(stats.k_neg_max[at])));
    const float q_amax = __uint_as_float(stats.q_amax[at]);
    balance[e] = k_amax == 0.0f || q_amax == 0.0f ? 1.0f : __fsqrt_rn(__fdiv_rn(k_amax, q_amax));
  }
  float values[kRowsPerWarp][4];
  float amax = 0.0f;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int s = blk * kBlock + warp * kRowsPerWarp + r;
#pragma unroll
    for (int e = 0; e < 4; ++e) values[r][e] = 0.0f;
    if (s < seq) {
      const T* row = x + ((int64_t{b} * seq + s) * heads + h) * kDim + 4 * lane;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float raw = to_float(row[e]);
        values[r][e] = kKeys ? __fdiv_rn(__fsub_rn(raw, mean[e]), balance[e]) : __fmul_rn(raw, balance[e]);
        amax = fmaxf(amax, fabsf(values[r][e]));
      }
    }
  }
  // Keys: one scale per 128-row block; queries: one per warp's 16 rows.
  amax = kKeys ? block_max(amax, scratch) : warp_max(amax);
  float scale = __fdiv_rn(amax, 127.0f);
  if (scale == 0.0f) scale = 1.0f;
  if (kKeys && threadIdx.x == 0) scales[(int64_t{b} * heads + h) * gridDim.x + blk] = scale;
  if (!kKeys && lane == 0) scales[(int64_t{b} * heads + h) * (gridDim.x * kWarpsPerBlock) + blk * kWarpsPerBlock + warp] = scale;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int s = blk * kBlock + warp * kRowsPerWarp + r;
    if (s >= seq) continue;
    char4 out;
    out.x = int8_code(values[r][0], scale);
    out.y = int8_code(values[r][1], scale);
    out.z = int8_code(values[r][2], scale);
    out.w = int8_code(values[r][3], scale);
    *reinterpret_cast<char4*>(codes + ((int64_t{b} * seq + s) * heads + h) * kDim + 4 * lane) = out;
  }
}

// The key stored at position p of a 16-key group of Vᵀ (the file comment's σ).
__host__ __device__ constexpr int permuted_key(int p) { return 2 * ((p % 16) / 4) + (p & 1) + 8 * ((p >> 1) & 1); }

// v [B, S, Hk, 128] → vt [B, Hk, 128, S_pad] e4m3 (positions past S zero) and scales [B, Hk, 128].
template <class T>
__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_values_kernel(const T* __restrict__ v, const unsigned* __restrict__ v_amax_bits, uint8_t* __restrict__ vt,
                           float* __restrict__ v_scales, int seq, int padded, int heads) {
  constexpr int kStride = kDim + 4;  // bytes per staged key row (spreads the column reads over banks)
  __shared__ uint8_t staged[kBlock * kStride];
  __shared__ float scale[kDim];
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = int64_t{b} * heads + h;
  if (threadIdx.x < kDim) {
    float s = __fdiv_rn(__uint_as_float(v_amax_bits[bh * kDim + threadIdx.x]), 448.0f);
    if (s == 0.0f) s = 1.0f;
    scale[threadIdx.x] = s;
    if (blk == 0) v_scales[bh * kDim + threadIdx.x] = s;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kBlock * kDim; i += kQuantizeThreads) {
    const int key = i / kDim, c = i % kDim, s = blk * kBlock + key;
    uint8_t code = 0;
    if (s < seq) {
      const float x = to_float(v[((int64_t{b} * seq + s) * heads + h) * kDim + c]);
      code = static_cast<uint8_t>(__nv_cvt_float_to_fp8(__fdiv_rn(x, scale[c]), __NV_SATFINITE, __NV_E4M3));
    }
    staged[key * kStride + c] = code;
  }
  __syncthreads();
  // Each thread writes 16 positions (one key group) of one channel's row: 16 bytes.
  for (int task = threadIdx.x; task < kDim * (kBlock / 16); task += kQuantizeThreads) {
    const int c = task / (kBlock / 16), group = task % (kBlock / 16);
    uint32_t words[4];
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      uint32_t word = 0;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = group * 16 + permuted_key(4 * w + e);
        word |= uint32_t{staged[key * kStride + c]} << (8 * e);
      }
      words[w] = word;
    }
    *reinterpret_cast<uint4*>(vt + (bh * kDim + c) * padded + blk * kBlock + group * 16) =
        make_uint4(words[0], words[1], words[2], words[3]);
  }
}

// ---- the attention kernel ----------------------------------------------------------------

struct Int8Params {
  CUtensorMap q_map, k_map, v_map;  // Q/K codes [B, S, H, 128] as {D, H, S, B}; Vᵀ as {S_pad, D, Hk, B}
  void* out;                         // [B, Sq, H, 128], q's dtype
  bool half_out;                     // float16 (else bfloat16)
  const float* q_scales;             // [B, H, q_blocks]: 16 rows each
  const float* k_scales;             // [B, Hk, k_blocks]
  const float* v_scales;             // [B, Hk, 128]
  int q_len, kv_len, heads, kv_heads, group, q_blocks, k_blocks;
  float scale_log2;  // softmax scale · log2(e)
};

// d (64×128 s32) = a (64×32 INT8, K-major in shared memory) · b (32×128, K-major), plus d
// when `accumulate` (0 ignores d's old values: the first step of a tile).
__device__ __forceinline__ void wgmma_s8(uint32_t (&d)[64], uint64_t a, uint64_t b, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 " FASTDIT_REGS64 ", %64, %65, p;\n}\n"
               : FASTDIT_OPS64("+r", d)
               : "l"(a), "l"(b), "r"(accumulate));
}
// d (64×136 f32) = a (64×32 e4m3 in registers) · b (32×136 e4m3, K-major), plus d when `accumulate`.
__device__ __forceinline__ void wgmma_e4m3_n136(float (&d)[68], const uint32_t* a, uint64_t b, int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %73, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n136k32.f32.e4m3.e4m3 "
               "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
               "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "
               "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
               "%56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67}"
               ", {%68, %69, %70, %71}, %72, p, 1, 1;\n}\n"
               : FASTDIT_OPS64("+f", d), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}

__device__ __forceinline__ uint32_t pack_e4m3(float a, float b, float c, float d) {
  const uint32_t low = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
  const uint32_t high = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, __NV_E4M3);
  return low | high << 16;
}

// P (448·p, float32 in the S accumulator layout) as the e4m3 A operand of P·V: register 4k + j
// (k: 32-key step, j: 0..3) holds row g + 8·(j & 1), keys of accumulator groups n0 = 4k +
// 2·(j >> 1) and n0 + 1, the thread's two columns of each.
__device__ __forceinline__ void quantize_probabilities(const float (&s)[64], uint32_t (&p)[16]) {
#pragma unroll
  for (int k = 0; k < 4; ++k) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int r = j & 1, n0 = 4 * k + 2 * (j >> 1);
      p[4 * k + j] = pack_e4m3(s[4 * n0 + 2 * r], s[4 * n0 + 2 * r + 1], s[4 * n0 + 4 + 2 * r], s[4 * n0 + 4 + 2 * r + 1]);
    }
  }
}

// The softmax of one tile straight from the INT32 sums (|acc| <= 127² · 128 < 2^22): as
// floats x = 2^23 + 2^22 + acc (exact, and ordered as acc) they need no conversion unit,
// which the exponentials keep busy; scores in softmax units are (x − 2^23 − 2^22) · factor
// (factor = qscale · kscale · scale · log2 e > 0), so the tile max is one subtraction and one
// multiply a row, and each P = 448 · 2^(score − max) one FMA and one exp2:
// x · factor + (log2 448 − max − (2^23 + 2^22) · factor), exact but for that constant's
// rounding (≈ 2^-23 · 1.3·10^7 · factor: an error of one unit of acc, the same for the row's
// whole tile). With kMask keys at or past kv_len count as −inf. row_max is in softmax units;
// correction says by how much O and the sum shrink (0 for the first tile).
template <bool kMask>
__device__ __forceinline__ void softmax_codes(const uint32_t (&acc)[64], float (&s)[64], float (&row_max)[2],
                                              float (&correction)[2], float factor, int first_key, int kv_len) {
  constexpr float kBias = 12582912.0f;             // 2^23 + 2^22
  constexpr float kLog2Gain = 8.807354922057604f;  // log2(448): P leaves the softmax as 448·p
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    s[i] = __int_as_float(static_cast<int>(acc[i]) + 0x4B400000);
    if constexpr (kMask) {
      if (first_key + (i / 4) * 8 + (lane % 4) * 2 + (i & 1) >= kv_len) s[i] = -INFINITY;
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float m = -INFINITY;
#pragma unroll
    for (int n = 0; n < 16; ++n) m = fmaxf(m, fmaxf(s[4 * n + 2 * r], s[4 * n + 2 * r + 1]));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
    // Finite: every tile holds a key below kv_len.
    const float new_max = fmaxf(row_max[r], (m - kBias) * factor);
    correction[r] = exp2_approx(row_max[r] - new_max);
    row_max[r] = new_max;
    const float offset = fmaf(-kBias, factor, kLog2Gain - new_max);
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      s[4 * n + 2 * r] = exp2_approx(fmaf(s[4 * n + 2 * r], factor, offset));
      s[4 * n + 2 * r + 1] = exp2_approx(fmaf(s[4 * n + 2 * r + 1], factor, offset));
    }
  }
}

// The two consumer warpgroups' turns at issuing MMAs (kPingPong): named barriers 1 and 2, each
// completed by its own warpgroup's sync and the other's arrival, so issues alternate and one
// group's softmax runs while the other's MMAs keep the tensor cores busy.
__device__ __forceinline__ void named_barrier_sync(int id) {
  asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id) {
  asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory");
}

struct SharedLayout {
  uint32_t base;
  __device__ uint32_t q_tile() const { return base; }
  __device__ uint32_t k_tile(int stage) const { return base + kKOffset + stage * kTileBytes; }
  __device__ uint32_t v_tile(int stage) const { return base + kVOffset + stage * kVSlotBytes; }
  __device__ uint32_t barrier(int i) const { return base + kBarrierOffset + 8 * i; }
  __device__ uint32_t q_full() const { return barrier(0); }
  __device__ uint32_t k_full(int stage) const { return barrier(1 + stage); }
  __device__ uint32_t v_full(int stage) const { return barrier(1 + kStages + stage); }
  __device__ uint32_t k_empty(int stage) const { return barrier(1 + 2 * kStages + stage); }
  __device__ uint32_t v_empty(int stage) const { return barrier(1 + 3 * kStages + stage); }
};

__device__ __forceinline__ void produce(const Int8Params& p, const SharedLayout& smem, int first_query, int head,
                                        int batch, int tiles) {
  barrier_arrive_expect_bytes(smem.q_full(), kTileBytes);
  copy_tile(smem.q_tile(), p.q_map, 0, head, first_query, batch, smem.q_full());
  const int kv_head = head / p.group;
  for (int j = 0; j < tiles; ++j) {
    const int stage = j % kStages;
    const uint32_t previous_use_parity = (j / kStages - 1) & 1;
    if (j >= kStages) barrier_wait(smem.k_empty(stage), previous_use_parity);
    barrier_arrive_expect_bytes(smem.k_full(stage), kTileBytes);
    copy_tile(smem.k_tile(stage), p.k_map, 0, kv_head, j * kBlock, batch, smem.k_full(stage));
    if (j >= kStages) barrier_wait(smem.v_empty(stage), previous_use_parity);
    barrier_arrive_expect_bytes(smem.v_full(stage), kTileBytes);
    copy_tile(smem.v_tile(stage), p.v_map, j * kBlock, 0, kv_head, batch, smem.v_full(stage));
  }
}

template <bool kPingPong>
__device__ __forceinline__ void consume(const Int8Params& p, const SharedLayout& smem, int group, int q_block,
                                        int head, int batch, int tiles) {
  const int warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;
  const int kv_head = head / p.group;
  const uint64_t q_desc = matrix_descriptor(smem.q_tile() + group * 64 * 128, 16, 1024);
  const uint64_t k_desc = matrix_descriptor(smem.k_tile(0), 16, 1024);
  const uint64_t v_desc = matrix_descriptor(smem.v_tile(0), 16, 1024);
  const float q_scale =
      p.q_scales[(int64_t{batch} * p.heads + head) * p.q_blocks + q_block * 8 + group * 4 + warp] * p.scale_log2;
  const float* k_scales = p.k_scales + (int64_t{batch} * p.kv_heads + kv_head) * p.k_blocks;

  uint32_t acc[64];
  float s[64], o[64], o_tile[68];  // o_tile[64 + 2r] of lane 4i: the tile's Σ P̂ of row r
  uint32_t probabilities[16];
  float row_max[2] = {-INFINITY, -INFINITY}, correction[2];
  float p_sum[2] = {0.0f, 0.0f};  // Σ P̂ so far, in O's units (lanes 4i)
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;

  // S = Q·K_jᵀ over the head dim, 32 channels (32 bytes of each row) a step.
  auto issue_scores = [&](int stage) {
#pragma unroll
    for (int kk = 0; kk < kDim / 32; ++kk) {
      wgmma_s8(acc, q_desc + ((kk * 32) >> 4), k_desc + ((stage * kTileBytes + kk * 32) >> 4), kk > 0);
    }
  };
  // O_tile = P·V_j over the tile's keys, 32 keys (32 bytes of each Vᵀ row) a step.
  auto issue_values = [&](int stage) {
#pragma unroll
    for (int kk = 0; kk < kBlock / 32; ++kk) {
      wgmma_e4m3_n136(o_tile, probabilities + 4 * kk, v_desc + ((stage * kVSlotBytes + kk * 32) >> 4), kk > 0);
    }
  };
  const bool ragged = p.kv_len % kBlock != 0;
  auto softmax = [&](int j) {
    const float factor = q_scale * k_scales[j];
    if (ragged && j == tiles - 1) {
      softmax_codes<true>(acc, s, row_max, correction, factor, j * kBlock, p.kv_len);
    } else {
      softmax_codes<false>(acc, s, row_max, correction, factor, j * kBlock, p.kv_len);
    }
  };
  // Issue points: S_0, then S_j with P·V_{j-1}, then the last P·V: tiles + 1 a group. Group 1
  // hands group 0 the first turn and skips its last hand-over, so every arrival is awaited.
  auto take_turn = [&] {
    if constexpr (kPingPong) named_barrier_sync(1 + group);
  };
  auto pass_turn = [&](bool last) {
    if constexpr (kPingPong) {
      if (!(last && group == 1)) named_barrier_arrive(2 - group);
    }
  };
  if constexpr (kPingPong) {
    if (group == 1) named_barrier_arrive(1);
  }
  auto parity = [](int j) { return static_cast<uint32_t>(j / kStages) & 1; };

  barrier_wait(smem.q_full(), 0);
  barrier_wait(smem.k_full(0), 0);
  take_turn();
  wgmma_fence();
  issue_scores(0);
  wgmma_commit();
  pass_turn(false);
  wgmma_wait<0>();
  fence_registers(acc);
  if (lane == 0) barrier_arrive(smem.k_empty(0));
  softmax(0);  // O is still zero: no rescale
  quantize_probabilities(s, probabilities);

  for (int j = 1; j < tiles; ++j) {
    const int stage = j % kStages, previous = (j - 1) % kStages;
    barrier_wait(smem.k_full(stage), parity(j));
    barrier_wait(smem.v_full(previous), parity(j - 1));
    fence_registers(acc);
    fence_registers(o_tile);
    fence_registers(probabilities);
    take_turn();
    wgmma_fence();
    issue_scores(stage);
    wgmma_commit();
    issue_values(previous);
    wgmma_commit();
    pass_turn(false);
    wgmma_wait<1>();  // S_j is in; P·V_{j-1} may still run
    fence_registers(acc);
    if (lane == 0) barrier_arrive(smem.k_empty(stage));
    softmax(j);
    wgmma_wait<0>();
    fence_registers(o_tile);
    fence_registers(probabilities);
    if (lane == 0) barrier_arrive(smem.v_empty(previous));
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = (o[i] + o_tile[i]) * correction[(i / 2) % 2];
    p_sum[0] = (p_sum[0] + o_tile[64]) * correction[0];
    p_sum[1] = (p_sum[1] + o_tile[66]) * correction[1];
    quantize_probabilities(s, probabilities);
  }
  const int last = (tiles - 1) % kStages;
  barrier_wait(smem.v_full(last), parity(tiles - 1));
  fence_registers(o_tile);
  fence_registers(probabilities);
  take_turn();
  wgmma_fence();
  issue_values(last);
  wgmma_commit();
  pass_turn(true);
  wgmma_wait<0>();
  fence_registers(o_tile);
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] += o_tile[i];
  p_sum[0] += o_tile[64];
  p_sum[1] += o_tile[66];

  // O · vscale / row sum, rounded, 2 channels per store.
  auto* out = static_cast<uint16_t*>(p.out);
  const float* v_scales = p.v_scales + (int64_t{batch} * p.kv_heads + kv_head) * kDim;
  const int64_t row_stride = int64_t{p.heads} * kDim;
  const int first_query = q_block * kBlock;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    // The normaliser is the sum of the P̂ the MMA used (its ones row), so the weights of the
    // output sum to 1 exactly as quantized: a dominant key's own rounding cancels.
    const float sum = __shfl_sync(0xffffffffu, p_sum[r], lane & ~3);
    const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int row = first_query + group * 64 + warp * 16 + lane / 4 + 8 * r;
    if (row >= p.q_len) continue;
    uint16_t* out_row = out + (int64_t{batch} * p.q_len + row) * row_stride + int64_t{head} * kDim;
#pragma unroll
    for (int n = 0; n < kDim / 8; ++n) {
      const int c = n * 8 + (lane % 4) * 2;
      const float2 vs = *reinterpret_cast<const float2*>(v_scales + c);
      const float x = o[4 * n + 2 * r] * inv_sum * vs.x, y = o[4 * n + 2 * r + 1] * inv_sum * vs.y;
      *reinterpret_cast<uint32_t*>(out_row + c) = p.half_out ? pack2<__half>(x, y) : pack2<__nv_bfloat16>(x, y);
    }
  }
}

template <bool kPingPong>
__global__ void __launch_bounds__(kThreads, 1) attention_int8_kernel(const __grid_constant__ Int8Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char shared_raw[];
  const uint32_t raw = shared_address(shared_raw), aligned = (raw + 1023u) & ~1023u;
  const SharedLayout smem{aligned};
  const int head = blockIdx.y, batch = blockIdx.z;
  const int tiles = (p.kv_len + kBlock - 1) / kBlock;
  // Each Vᵀ slot's constant rows: e4m3 1.0 (0x38) across row 128, zeros in rows 129..135
  // (row 0 of a swizzle atom is not permuted; the rest are all zero). The MMAs read them
  // through the async proxy, hence the fence.
  for (int i = threadIdx.x; i < kStages * 8 * kBlock / 4; i += kThreads) {
    const int stage = i / (8 * kBlock / 4), word = i % (8 * kBlock / 4);
    reinterpret_cast<uint32_t*>(shared_raw + (aligned - raw) + kVOffset + stage * kVSlotBytes + kTileBytes)[word] =
        word < kBlock / 4 ? 0x38383838u : 0u;
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  init_ring_barriers(smem, kStages, kConsumerWarps);
  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    registers_release<kProducerRegisters>();
    if (threadIdx.x == 0) produce(p, smem, blockIdx.x * kBlock, head, batch, tiles);
  } else {
    registers_claim<kConsumerRegisters>();
    consume<kPingPong>(p, smem, warpgroup - 1, blockIdx.x, head, batch, tiles);
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // built without sm_90a: attention_8bit_refusal never lets a call reach it
#endif
}

// ---- host side ---------------------------------------------------------------------------

// A 4-D map of 8-bit codes, innermost first, boxes of {box0, box1, box2, 1} in the 128-byte swizzle.
CUtensorMap code_map(const void* data, const cuuint64_t (&dims)[4], cuuint32_t box0, cuuint32_t box1,
                     cuuint32_t box2) {
  const cuuint64_t strides[3] = {dims[0], dims[0] * dims[1], dims[0] * dims[1] * dims[2]};  // bytes
  const cuuint32_t box[4] = {box0, box1, box2, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  CUtensorMap map;
  const CUresult status = tensor_map_encoder()(
      &map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, const_cast<void*>(data), dims, strides, box, element_strides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  FASTDIT_CHECK(status == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed (CUresult ", static_cast<int>(status),
                ") for 8-bit attention codes [", dims[3], ", ", dims[2], ", ", dims[1], ", ", dims[0], "]");
  return map;
}

template <class T>
void launch_quantize(const Tensor& q, const Tensor& k, const Tensor& v, Attention8Operands& o, cudaStream_t stream) {
  const int batch = static_cast<int>(q.size(0)), q_len = static_cast<int>(q.size(1)), heads = static_cast<int>(q.size(2));
  const int kv_len = static_cast<int>(k.size(1)), kv_heads = static_cast<int>(k.size(2)), group = heads / kv_heads;
  const int padded = static_cast<int>(o.v_t.size(3));
  // One allocation for the statistics: k sums (float64), then four int32 arrays.
  const int64_t channels = int64_t{batch} * kv_heads * kDim;
  Tensor storage = Tensor::empty({channels * 3}, DType::Float64, q.device());
  auto* base = static_cast<unsigned char*>(storage.data_ptr());
  ChannelStats stats{reinterpret_cast<double*>(base), reinterpret_cast<int*>(base + channels * 8),
                     reinterpret_cast<int*>(base + channels * 12), reinterpret_cast<unsigned*>(base + channels * 16),
                     reinterpret_cast<unsigned*>(base + channels * 20)};
  FASTDIT_CUDA_CHECK(cudaMemsetAsync(base, 0, channels * 8, stream));
  FASTDIT_CUDA_CHECK(cudaMemsetAsync(base + channels * 8, 0x80, channels * 8, stream));  // below every float
  FASTDIT_CUDA_CHECK(cudaMemsetAsync(base + channels * 16, 0, channels * 8, stream));
  const auto* qp = static_cast<const T*>(q.data_ptr());
  const auto* kp = static_cast<const T*>(k.data_ptr());
  const auto* vp = static_cast<const T*>(v.data_ptr());
  const auto chunks = [](int seq) { return static_cast<unsigned>((seq + kStatsChunk - 1) / kStatsChunk); };
  key_value_stats_kernel<T><<<dim3(batch * kv_heads, chunks(kv_len)), kStatsThreads, 0, stream>>>(kp, vp, stats, kv_len,
                                                                                                   kv_heads);
  FASTDIT_CUDA_CHECK(cudaGetLastError());
  query_stats_kernel<T><<<dim3(batch * heads, chunks(q_len)), kStatsThreads, 0, stream>>>(qp, stats, q_len, heads, group);
  FASTDIT_CUDA_CHECK(cudaGetLastError());
  quantize_blocks_kernel<T, false><<<dim3((q_len + kBlock - 1) / kBlock, heads, batch), kQuantizeThreads, 0, stream>>>(
      qp, stats, o.q.data<int8_t>(), o.q_scales.data<float>(), q_len, heads, group, kv_len);
  FASTDIT_CUDA_CHECK(cudaGetLastError());
  quantize_blocks_kernel<T, true><<<dim3(o.k_scales.size(2), kv_heads, batch), kQuantizeThreads, 0, stream>>>(
      kp, stats, o.k.data<int8_t>(), o.k_scales.data<float>(), kv_len, kv_heads, 1, kv_len);
  FASTDIT_CUDA_CHECK(cudaGetLastError());
  quantize_values_kernel<T><<<dim3(padded / kBlock, kv_heads, batch), kQuantizeThreads, 0, stream>>>(
      vp, stats.v_amax, o.v_t.data<uint8_t>(), o.v_scales.data<float>(), kv_len, padded, kv_heads);
  FASTDIT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

bool attention_8bit_ping_pong() {
  const char* value = std::getenv("FASTDIT_ATTENTION8_SCHEDULE");
  const std::string_view schedule = value ? value : "";
  FASTDIT_CHECK(schedule.empty() || schedule == "ping-pong" || schedule == "overlap", "FASTDIT_ATTENTION8_SCHEDULE=",
                schedule, " is not ping-pong or overlap");
  return schedule != "overlap";  // ping-pong by default: 793 against 729 TOPS (bench/RESULTS.md)
}

int attention8_permuted_key(int position) { return (position / 16) * 16 + permuted_key(position % 16); }

std::string attention_8bit_refusal(const Tensor& q, const Tensor& k, const Tensor& v) {
#ifndef FASTDIT_SM90A_KERNELS
  return "this build has no sm_90a kernels";
#endif
  if (q.dtype() != DType::BFloat16 && q.dtype() != DType::Float16) return "q, k and v must be bfloat16 or float16";
  if (q.size(3) != kDim || k.size(3) != kDim || v.size(3) != kDim) return "the head dim must be 128";
  const cudaDeviceProp& device = device_properties(q.device().index);
  if (device.major != 9 || device.minor != 0) return "the kernel needs an sm_90 (Hopper) device";
  if (q.size(1) >= (int64_t{1} << 30) || k.size(1) >= (int64_t{1} << 30)) return "sequences must be shorter than 2^30";
  return {};
}

Attention8Operands quantize_attention_8bit(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t batch = q.size(0), q_len = q.size(1), heads = q.size(2), kv_len = k.size(1), kv_heads = k.size(2);
  const int64_t padded = (kv_len + kBlock - 1) / kBlock * kBlock;
  const Device device = q.device();
  Attention8Operands o{Tensor::empty({batch, q_len, heads, kDim}, DType::Int8, device),
                       Tensor::empty({batch, kv_len, kv_heads, kDim}, DType::Int8, device),
                       Tensor::empty({batch, kv_heads, kDim, padded}, DType::Float8E4M3, device),
                       Tensor::empty({batch, heads, (q_len + kBlock - 1) / kBlock * (kBlock / attention8::kQueryBlock)},
                                     DType::Float32, device),
                       Tensor::empty({batch, kv_heads, padded / kBlock}, DType::Float32, device),
                       Tensor::empty({batch, kv_heads, kDim}, DType::Float32, device)};
  DeviceGuard guard(device);
  const cudaStream_t stream = current_stream(device.index);
  if (q.dtype() == DType::BFloat16) {
    launch_quantize<__nv_bfloat16>(q, k, v, o, stream);
  } else {
    launch_quantize<__half>(q, k, v, o, stream);
  }
  return o;
}

void attention_8bit(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor& out) {
  const Attention8Operands o = quantize_attention_8bit(q, k, v);
  DeviceGuard guard(out.device());
  const cudaStream_t stream = current_stream(out.device().index);
  const auto dim = [](const Tensor& t, int i) { return static_cast<cuuint64_t>(t.size(i)); };
  Int8Params p{};
  p.q_map = code_map(o.q.data_ptr(), {kDim, dim(q, 2), dim(q, 1), dim(q, 0)}, kDim, 1, kBlock);
  p.k_map = code_map(o.k.data_ptr(), {kDim, dim(k, 2), dim(k, 1), dim(k, 0)}, kDim, 1, kBlock);
  p.v_map = code_map(o.v_t.data_ptr(), {dim(o.v_t, 3), kDim, dim(k, 2), dim(k, 0)}, kBlock, kDim, 1);
  p.out = out.data_ptr();
  p.half_out = out.dtype() == DType::Float16;
  p.q_scales = o.q_scales.data<float>();
  p.k_scales = o.k_scales.data<float>();
  p.v_scales = o.v_scales.data<float>();
  p.q_len = static_cast<int>(q.size(1));
  p.kv_len = static_cast<int>(k.size(1));
  p.heads = static_cast<int>(q.size(2));
  p.kv_heads = static_cast<int>(k.size(2));
  p.group = p.heads / p.kv_heads;
  p.q_blocks = static_cast<int>(o.q_scales.size(2));
  p.k_blocks = static_cast<int>(o.k_scales.size(2));
  p.scale_log2 = scale * 1.4426950408889634f;
  const auto kernel = attention_8bit_ping_pong() ? attention_int8_kernel<true> : attention_int8_kernel<false>;
  FASTDIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(kSharedBytes)));
  const dim3 grid(static_cast<unsigned>((q.size(1) + kBlock - 1) / kBlock), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(q.size(0)));
  kernel<<<grid, kThreads, kSharedBytes, stream>>>(p);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

}  // namespace fastdit::cuda
