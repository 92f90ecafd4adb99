// Flash attention forward for Hopper (sm_90a) at head dim 64 or 128, bfloat16 / float16, on
// warpgroup MMAs (wgmma) whose shared-memory operands arrive through the tensor-copy engine
// (TMA). The generic mma.sync kernel (attention_flash.cu) serves every other call.
//
// Grid (ceil(Sq / 128), H, B); a CTA of 3 warpgroups owns 128 query rows of one head:
//   warpgroup 0 is the producer, one lane of which issues every copy; it gives most of its
//   registers to
//   warpgroups 1 and 2, the consumers, 64 query rows each (setmaxnreg: 24 and 240 registers
//   a thread instead of the 168 that 384 threads get at launch).
// Shared memory, every tile in the 128-byte swizzle that TMA writes and wgmma reads (a row of
// 64 elements is 128 bytes, its eight 16-byte chunks permuted by the row index mod 8, so
// 1024-byte aligned tiles); a tile of head dim 128 is two such 64-column panels:
//   Q [128 rows][D] once, K [kKeys][D] and V [kKeys][D] in kStages ring slots, mbarriers.
// Each slot has a "full" barrier (armed by the producer with the tile's byte count, completed
// by the copy) and an "empty" barrier (one arrival per consumer warp once its MMAs have read
// the slot), for K and V apart so that Q·Kᵀ starts before V lands. Copies outside Sq / Sk
// are zero-filled by the copy engine, so any sequence length works.
// Per key tile j each consumer warpgroup waits for K_j and V_{j-1}, then issues back to back
//   S_j = Q·K_jᵀ           wgmma, both operands from shared memory (K row-major is what
//                          wgmma calls K-major);
//   O += P_{j-1}·V_{j-1}   wgmma, P from registers, V read transposed (MN-major);
// waits for S_j alone and runs its softmax (fp32, the scale folded into one exp2 argument per
// element) while P·V_{j-1} is still on the tensor cores; O is rescaled once that MMA retires.
// (Softmax after both MMAs instead measured 580 against 661 TFLOP/s at [1, 12, 32760, 128].)
// The accumulator layout of S is the A-operand layout of P, so P is S rounded in place. At
// the end O is divided by the row sums and stored from registers.
// Registers per consumer thread: O 64, S 64, P 32 floats / words at head dim 128.
#include <cuda.h>
#include <cudaTypedefs.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/attention.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/kernel_common.cuh"
#include "backends/cuda/sm90_pipeline.cuh"

namespace fastdit::cuda {
namespace {

using namespace sm90;

constexpr int kConsumerWarps = 8;
constexpr int kThreads = 128 + kConsumerWarps * 32;
constexpr int kProducerRegisters = 24, kConsumerRegisters = 240;

template <int kHeadDim>
struct Sm90Tile {
  static constexpr int kQueryRows = 128;  // 64 per consumer warpgroup
  static constexpr int kKeys = 128;       // per K / V tile
  // K/V ring slots: 3 at head dim 64 (measured +3 % at [1, 38, 4429, 64]); 2 at 128, where a
  // third slot (224 KB of shared memory) measured within noise of 2 (bench/notes/flash.md).
  static constexpr int kStages = kHeadDim == 64 ? 3 : 2;
  static constexpr int kPanels = kHeadDim / 64;
  static constexpr uint32_t kQPanelBytes = kQueryRows * 128;
  static constexpr uint32_t kKvPanelBytes = kKeys * 128;
  static constexpr uint32_t kQBytes = kPanels * kQPanelBytes;
  static constexpr uint32_t kKvBytes = kPanels * kKvPanelBytes;  // one K or V tile
  static constexpr uint32_t kKOffset = kQBytes;
  static constexpr uint32_t kVOffset = kKOffset + kStages * kKvBytes;
  // A key mask's bias for each K slot's tile (float32), copied with the K tile.
  static constexpr uint32_t kBiasBytes = kKeys * 4;
  static constexpr uint32_t kBiasOffset = kVOffset + kStages * kKvBytes;
  static constexpr uint32_t kBarrierOffset = kBiasOffset + kStages * kBiasBytes;
  static constexpr int kBarriers = 1 + 4 * kStages;
  // The dynamic shared window is aligned up to 1024 bytes in the kernel, hence the slack.
  static constexpr size_t kSharedBytes = kBarrierOffset + kBarriers * 8 + 1024;
};

struct Sm90Params {
  CUtensorMap q_map, k_map, v_map;  // [B, S, H, D] seen as 4-D {D, H, S, B}
  void* out;
  int q_len, kv_len, heads;
  int group;         // query heads per K/V head (query head h reads K/V head h / group)
  float scale_log2;  // softmax scale · log2(e), > 0
  // Optional additive key bias (a key mask, KeyBias), float32 [B or 1][bias_batch_stride or
  // the one row], pre-divided by the scale so it adds to raw scores; −inf drops a key.
  // bias_batch_stride 0: shared by the batch. tile_flags: a flag per kKeyBiasChunk keys.
  const float* key_bias;
  const int32_t* tile_flags;
  int64_t bias_batch_stride, flags_batch_stride;
};

// d (64×128 fp32) = a (64×16, K-major in shared memory) · b (16×128, K-major), plus d when
// `accumulate`.
#define FASTDIT_WGMMA_SS_N128(TYPE)                                                           \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                   \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " " FASTDIT_REGS64 \
               ", %64, %65, p, 1, 1, 0, 0;\n}\n"                                              \
               : FASTDIT_ACC64(d)                                                             \
               : "l"(a), "l"(b), "r"(accumulate))
template <class T>
__device__ __forceinline__ void wgmma_ss_n128(float (&d)[64], uint64_t a, uint64_t b,
                                              int accumulate) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    FASTDIT_WGMMA_SS_N128("bf16");
  } else {
    FASTDIT_WGMMA_SS_N128("f16");
  }
}

// d (64×N fp32) += a (64×16 in registers) · b (16×N, MN-major in shared memory).
#define FASTDIT_WGMMA_RS_N128(TYPE)                                                           \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                   \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " " FASTDIT_REGS64 \
               ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                \
               : FASTDIT_ACC64(d)                                                             \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1))
#define FASTDIT_WGMMA_RS_N64(TYPE)                                                           \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                  \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " " FASTDIT_REGS32 \
               ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                               \
               : FASTDIT_ACC32(d)                                                            \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1))
template <class T, int N>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t* a, uint64_t b) {
  static_assert(N == 64 || N == 128);
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  if constexpr (N == 128 && kBf16) {
    FASTDIT_WGMMA_RS_N128("bf16");
  } else if constexpr (N == 128) {
    FASTDIT_WGMMA_RS_N128("f16");
  } else if constexpr (kBf16) {
    FASTDIT_WGMMA_RS_N64("bf16");
  } else {
    FASTDIT_WGMMA_RS_N64("f16");
  }
}
#undef FASTDIT_WGMMA_SS_N128
#undef FASTDIT_WGMMA_RS_N128
#undef FASTDIT_WGMMA_RS_N64

// P as the A operand of the next wgmma: the k-th 16-key slice is registers 4k..4k+3, pairs
// of adjacent accumulator elements.
template <class T, int N>
__device__ __forceinline__ void round_probabilities(const float (&s)[N], uint32_t (&p)[N / 2]) {
#pragma unroll
  for (int i = 0; i < N / 2; ++i) p[i] = pack2<T>(s[2 * i], s[2 * i + 1]);
}

// ---- the kernel ------------------------------------------------------------------------

// Shared-memory addresses of one CTA (the dynamic window aligned up to 1024 bytes).
template <int kHeadDim>
struct SharedLayout {
  using Tiles = Sm90Tile<kHeadDim>;
  uint32_t base;
  unsigned char* generic;  // base as a generic pointer
  __device__ uint32_t q_tile() const { return base; }
  __device__ uint32_t bias_tile(int stage) const {
    return base + Tiles::kBiasOffset + stage * Tiles::kBiasBytes;
  }
  __device__ const float* bias_values(int stage) const {
    return reinterpret_cast<const float*>(generic + Tiles::kBiasOffset + stage * Tiles::kBiasBytes);
  }
  __device__ uint32_t k_tile(int stage) const {
    return base + Tiles::kKOffset + stage * Tiles::kKvBytes;
  }
  __device__ uint32_t v_tile(int stage) const {
    return base + Tiles::kVOffset + stage * Tiles::kKvBytes;
  }
  __device__ uint32_t barrier(int i) const { return base + Tiles::kBarrierOffset + 8 * i; }
  __device__ uint32_t q_full() const { return barrier(0); }
  __device__ uint32_t k_full(int stage) const { return barrier(1 + stage); }
  __device__ uint32_t v_full(int stage) const { return barrier(1 + Tiles::kStages + stage); }
  __device__ uint32_t k_empty(int stage) const { return barrier(1 + 2 * Tiles::kStages + stage); }
  __device__ uint32_t v_empty(int stage) const { return barrier(1 + 3 * Tiles::kStages + stage); }
};

// One thread: Q once, then K_j and V_j for every key tile into ring slot j mod kStages, each
// after the consumers have released that slot's previous tile.
template <int kHeadDim, bool kMasked>
__device__ __forceinline__ void produce(const Sm90Params& p, const SharedLayout<kHeadDim>& smem,
                                        int first_query, int head, int batch, int tiles) {
  using Tiles = Sm90Tile<kHeadDim>;
  constexpr int kStages = Tiles::kStages;
  barrier_arrive_expect_bytes(smem.q_full(), Tiles::kQBytes);
  for (int c = 0; c < Tiles::kPanels; ++c) {
    copy_tile(smem.q_tile() + c * Tiles::kQPanelBytes, p.q_map, c * 64, head, first_query, batch,
              smem.q_full());
  }
  const float* bias = kMasked ? p.key_bias + batch * p.bias_batch_stride : nullptr;
  for (int j = 0; j < tiles; ++j) {
    const int stage = j % kStages, first_key = j * Tiles::kKeys;
    const uint32_t previous_use_parity = (j / kStages - 1) & 1;
    if (j >= kStages) barrier_wait(smem.k_empty(stage), previous_use_parity);
    barrier_arrive_expect_bytes(smem.k_full(stage), Tiles::kKvBytes + (kMasked ? Tiles::kBiasBytes : 0));
    if constexpr (kMasked) copy_bytes(smem.bias_tile(stage), bias + first_key, Tiles::kBiasBytes, smem.k_full(stage));
    for (int c = 0; c < Tiles::kPanels; ++c) {
      copy_tile(smem.k_tile(stage) + c * Tiles::kKvPanelBytes, p.k_map, c * 64, head / p.group, first_key,
                batch, smem.k_full(stage));
    }
    if (j >= kStages) barrier_wait(smem.v_empty(stage), previous_use_parity);
    barrier_arrive_expect_bytes(smem.v_full(stage), Tiles::kKvBytes);
    for (int c = 0; c < Tiles::kPanels; ++c) {
      copy_tile(smem.v_tile(stage) + c * Tiles::kKvPanelBytes, p.v_map, c * 64, head / p.group, first_key,
                batch, smem.v_full(stage));
    }
  }
}

// A consumer warpgroup (`group` 0 or 1): query rows 64·group .. 64·group + 63 of the tile.
template <class T, int kHeadDim, bool kMasked>
__device__ __forceinline__ void consume(const Sm90Params& p, const SharedLayout<kHeadDim>& smem,
                                        int group, int first_query, int head, int batch,
                                        int tiles) {
  using Tiles = Sm90Tile<kHeadDim>;
  constexpr int kKeys = Tiles::kKeys, kStages = Tiles::kStages;
  const int warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;  // warp within the group
  const uint64_t q_desc = matrix_descriptor(smem.q_tile() + group * 64 * 128, 16, 1024);
  const uint64_t k_desc = matrix_descriptor(smem.k_tile(0), 16, 1024);
  const uint64_t v_desc = matrix_descriptor(smem.v_tile(0), Tiles::kKvPanelBytes, 1024);

  float o[kHeadDim / 2];
  float s[kKeys / 2];
  uint32_t probabilities[kKeys / 4];
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f}, correction[2];
#pragma unroll
  for (int i = 0; i < kHeadDim / 2; ++i) o[i] = 0.0f;

  // S = Q·K_jᵀ over the head dim, 16 columns a step: a step inside a 64-column panel moves
  // the start address 32 bytes (the swizzle is a function of the address bits, so the
  // panel's layout still holds), a new panel starts at its own base.
  auto issue_scores = [&](int stage) {
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
      const uint32_t q_offset = (kk / 4) * Tiles::kQPanelBytes + (kk % 4) * 32;
      const uint32_t k_offset =
          stage * Tiles::kKvBytes + (kk / 4) * Tiles::kKvPanelBytes + (kk % 4) * 32;
      wgmma_ss_n128<T>(s, q_desc + (q_offset >> 4), k_desc + (k_offset >> 4), kk > 0);
    }
  };
  // O += P·V_j over the tile's keys, 16 keys (2048 bytes of V rows) a step.
  auto issue_values = [&](int stage) {
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t v_offset = stage * Tiles::kKvBytes + kk * 16 * 128;
      wgmma_rs<T, kHeadDim>(o, probabilities + 4 * kk, v_desc + (v_offset >> 4));
    }
  };
  const bool ragged = p.kv_len % kKeys != 0;
  // With a key mask its bias tile sits in the K slot (the K slot is released after the
  // softmax then); a tile whose flags are all 0 skips the add. The unmasked kernel is its own
  // instantiation, so none of this costs it registers or instructions.
  constexpr bool masked = kMasked;
  const int32_t* flags = masked ? p.tile_flags + batch * p.flags_batch_stride : nullptr;
  static_assert(kKeys == 4 * kKeyBiasChunk, "a key tile is one int4 of flags");
  auto tile_biased = [&](int j) {
    if constexpr (!masked) return false;
    const int4 f = reinterpret_cast<const int4*>(flags)[j];
    return (f.x | f.y | f.z | f.w) != 0;
  };
  auto softmax = [&](int j, bool biased) {
    const bool last = ragged && j == tiles - 1;
    if (biased) {
      softmax_tile<false, true, kKeys>(s, row_max, row_sum, correction, j * kKeys, p.kv_len, p.scale_log2,
                                       smem.bias_values(j % kStages));
    } else if (last) {
      softmax_tile<true, false, kKeys>(s, row_max, row_sum, correction, j * kKeys, p.kv_len, p.scale_log2, nullptr);
    } else {
      softmax_tile<false, false, kKeys>(s, row_max, row_sum, correction, j * kKeys, p.kv_len, p.scale_log2, nullptr);
    }
  };
  auto parity = [](int j) { return static_cast<uint32_t>(j / kStages) & 1; };

  bool biased = tile_biased(0);
  barrier_wait(smem.q_full(), 0);
  barrier_wait(smem.k_full(0), 0);
  wgmma_fence();
  issue_scores(0);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(s);
  if (lane == 0 && !masked) barrier_arrive(smem.k_empty(0));
  softmax(0, biased);  // O is still zero: no rescale
  if (lane == 0 && masked) barrier_arrive(smem.k_empty(0));
  round_probabilities<T>(s, probabilities);

  for (int j = 1; j < tiles; ++j) {
    const int stage = j % kStages, previous = (j - 1) % kStages;
    biased = tile_biased(j);  // read before the waits, which hide its latency
    barrier_wait(smem.k_full(stage), parity(j));
    barrier_wait(smem.v_full(previous), parity(j - 1));
    fence_registers(s);
    fence_registers(o);
    fence_registers(probabilities);
    wgmma_fence();
    issue_scores(stage);
    wgmma_commit();
    issue_values(previous);
    wgmma_commit();
    wgmma_wait<1>();  // S_j is in; P·V_{j-1} may still run
    fence_registers(s);
    if (lane == 0 && !masked) barrier_arrive(smem.k_empty(stage));
    softmax(j, biased);
    if (lane == 0 && masked) barrier_arrive(smem.k_empty(stage));
    wgmma_wait<0>();
    fence_registers(o);
    fence_registers(probabilities);
    if (lane == 0) barrier_arrive(smem.v_empty(previous));
    rescale(o, correction);
    round_probabilities<T>(s, probabilities);
  }
  const int last = (tiles - 1) % kStages;
  barrier_wait(smem.v_full(last), parity(tiles - 1));
  fence_registers(o);
  fence_registers(probabilities);
  wgmma_fence();
  issue_values(last);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(o);

  // O / row sum, rounded, 2 elements per store.
  T* out = static_cast<T*>(p.out);
  const int64_t row_stride = int64_t{p.heads} * kHeadDim;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;  // 0: every key dropped (zeros)
    const int row = first_query + group * 64 + warp * 16 + lane / 4 + 8 * r;
    if (row >= p.q_len) continue;
    T* out_row = out + (int64_t{batch} * p.q_len + row) * row_stride + int64_t{head} * kHeadDim;
#pragma unroll
    for (int n = 0; n < kHeadDim / 8; ++n) {
      *reinterpret_cast<uint32_t*>(out_row + n * 8 + (lane % 4) * 2) =
          pack2<T>(o[4 * n + 2 * r] * inv_sum, o[4 * n + 2 * r + 1] * inv_sum);
    }
  }
}

template <class T, int kHeadDim, bool kMasked>
__global__ void __launch_bounds__(kThreads, 1)
    flash_forward_sm90(const __grid_constant__ Sm90Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tiles = Sm90Tile<kHeadDim>;
  extern __shared__ unsigned char shared_raw[];
  const uint32_t raw = shared_address(shared_raw), aligned = (raw + 1023u) & ~1023u;
  const SharedLayout<kHeadDim> smem{aligned, shared_raw + (aligned - raw)};
  const int head = blockIdx.y, batch = blockIdx.z;
  const int first_query = blockIdx.x * Tiles::kQueryRows;
  const int tiles = (p.kv_len + Tiles::kKeys - 1) / Tiles::kKeys;

  init_ring_barriers(smem, Tiles::kStages, kConsumerWarps);

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    registers_release<kProducerRegisters>();
    if (threadIdx.x == 0) produce<kHeadDim, kMasked>(p, smem, first_query, head, batch, tiles);
  } else {
    registers_claim<kConsumerRegisters>();
    consume<T, kHeadDim, kMasked>(p, smem, warpgroup - 1, first_query, head, batch, tiles);
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // built without sm_90a: flash_attention_sm90_serves never picks this kernel then
#endif
}

// ---- host side ---------------------------------------------------------------------------

// t is [B, S, H, D] contiguous; a box is `rows` sequence rows of one head and 64 columns,
// written into shared memory in the 128-byte swizzle.
CUtensorMap head_tile_map(const Tensor& t, int rows) {
  const cuuint64_t batch = t.size(0), seq = t.size(1), heads = t.size(2), dim = t.size(3);
  const cuuint64_t dims[4] = {dim, heads, seq, batch};
  const cuuint64_t strides[3] = {dim * 2, heads * dim * 2, seq * heads * dim * 2};  // bytes
  const cuuint32_t box[4] = {64, 1, static_cast<cuuint32_t>(rows), 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  CUtensorMap map;
  const CUresult status = tensor_map_encoder()(
      &map,
      t.dtype() == DType::BFloat16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                   : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
      4, t.data_ptr(), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  FASTDIT_CHECK(status == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed (CUresult ",
                static_cast<int>(status), ") for ", t.str());
  return map;
}

template <class T, int kHeadDim>
void launch_sm90(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const KeyBias& key_bias,
                 Tensor& out, cudaStream_t stream) {
  using Tiles = Sm90Tile<kHeadDim>;
  Sm90Params p{};
  p.q_map = head_tile_map(q, Tiles::kQueryRows);
  p.k_map = head_tile_map(k, Tiles::kKeys);
  p.v_map = head_tile_map(v, Tiles::kKeys);
  p.out = out.data_ptr();
  p.q_len = static_cast<int>(q.size(1));
  p.kv_len = static_cast<int>(k.size(1));
  p.heads = static_cast<int>(q.size(2));
  p.group = static_cast<int>(q.size(2) / k.size(2));
  p.scale_log2 = scale * 1.4426950408889634f;
  if (key_bias.defined()) {
    static_assert(kKeyBiasAlign % Tiles::kKeys == 0, "bias rows hold whole key tiles");
    p.key_bias = key_bias.bias.data<float>();
    p.tile_flags = key_bias.tile_flags.data<int32_t>();
    const bool shared = key_bias.bias.size(0) == 1;
    p.bias_batch_stride = shared ? 0 : key_bias.bias.size(1);
    p.flags_batch_stride = shared ? 0 : key_bias.tile_flags.size(1);
    FASTDIT_CHECK(reinterpret_cast<uintptr_t>(p.key_bias) % 16 == 0 && reinterpret_cast<uintptr_t>(p.tile_flags) % 16 == 0,
                  "flash_attention_sm90: the key bias must be 16-byte aligned");
  }
  const auto kernel = key_bias.defined() ? flash_forward_sm90<T, kHeadDim, true> : flash_forward_sm90<T, kHeadDim, false>;
  FASTDIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tiles::kSharedBytes));
  const dim3 grid(static_cast<unsigned>((q.size(1) + Tiles::kQueryRows - 1) / Tiles::kQueryRows),
                  static_cast<unsigned>(q.size(2)), static_cast<unsigned>(q.size(0)));
  kernel<<<grid, kThreads, Tiles::kSharedBytes, stream>>>(p);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

}  // namespace

// Sequence positions are 32-bit in the kernel (and TMA coordinates are), with room for a tile.
constexpr int64_t kMaxSequence = int64_t{1} << 30;

bool flash_attention_sm90_serves(const Tensor& q, const Tensor& k, const Tensor& v,
                                 float scale) {
#ifndef FASTDIT_SM90A_KERNELS  // set by CMake when CMAKE_CUDA_ARCHITECTURES holds 90a
  return false;
#endif
  const int64_t d = q.size(3);
  const cudaDeviceProp& device = device_properties(q.device().index);
  // sm_90a code runs on compute capability 9.0 alone.
  return device.major == 9 && device.minor == 0 && (d == 64 || d == 128) && q.size(2) % k.size(2) == 0 &&
         v.size(3) == d && scale > 0.0f && std::isfinite(scale) && q.size(1) < kMaxSequence &&
         k.size(1) < kMaxSequence;
}

void flash_attention_sm90(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                          const KeyBias& key_bias, Tensor& out) {
  DeviceGuard guard(out.device());
  const cudaStream_t stream = current_stream(out.device().index);
  const bool bf16 = q.dtype() == DType::BFloat16;
  if (q.size(3) == 64) {
    return bf16 ? launch_sm90<__nv_bfloat16, 64>(q, k, v, scale, key_bias, out, stream)
                : launch_sm90<__half, 64>(q, k, v, scale, key_bias, out, stream);
  }
  bf16 ? launch_sm90<__nv_bfloat16, 128>(q, k, v, scale, key_bias, out, stream)
       : launch_sm90<__half, 128>(q, k, v, scale, key_bias, out, stream);
}

}  // namespace fastdit::cuda
