// What the Hopper (sm_90a) attention kernels share: PTX wrappers for mbarriers, bulk and tensor
// copies (TMA), wgmma descriptors, fences and register budgets; the accumulator operand lists
// of the inline wgmma calls; and the bfloat16 kernel's online softmax over one 64×kKeys
// accumulator tile (the 8-bit kernel's works from INT32 sums: softmax_codes there).
// attention_flash_sm90.cu (bfloat16 / float16) and attention_int8_sm90.cu (INT8 Q·Kᵀ, FP8 P·V)
// include it inside their anonymous namespaces' neighbour: everything here is inline.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cmath>
#include <cstdint>

#include "backends/cuda/cuda_check.h"

namespace fastdit::cuda::sm90 {

// The driver's tensor-map encoder (host side), looked up once.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* function = nullptr;
    cudaDriverEntryPointQueryResult found{};
    FASTDIT_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000, cudaEnableDefault,
                                                        &found));
    FASTDIT_CHECK(found == cudaDriverEntryPointSuccess && function != nullptr,
                  "the CUDA driver offers no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function);
  }();
  return encode;
}

// ---- PTX wrappers ----------------------------------------------------------------------

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void barrier_init(uint32_t barrier, int arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(barrier), "r"(arrivals));
}
// Makes the initialised barriers visible to the copy engine.
__device__ __forceinline__ void barrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void barrier_arrive(uint32_t barrier) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(barrier) : "memory");
}
// The producer's arrival, announcing the bytes the copies will complete on the barrier.
__device__ __forceinline__ void barrier_arrive_expect_bytes(uint32_t barrier, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(barrier),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void barrier_wait(uint32_t barrier, uint32_t parity) {
  uint32_t done = 0;
  while (!done) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(barrier), "r"(parity)
        : "memory");
  }
}

// `bytes` (a multiple of 16) from global to shared memory, both 16-byte aligned; completes
// on `barrier`.
__device__ __forceinline__ void copy_bytes(uint32_t shared, const void* global, uint32_t bytes, uint32_t barrier) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(shared),
      "l"(global), "r"(bytes), "r"(barrier)
      : "memory");
}

// One box of a 4-D tensor map, {column, head, row, batch}, into shared memory; completes on
// `barrier`.
__device__ __forceinline__ void copy_tile(uint32_t shared, const CUtensorMap& map, int column,
                                          int head, int row, int batch, uint32_t barrier) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(shared),
      "l"(reinterpret_cast<uint64_t>(&map)), "r"(column), "r"(head), "r"(row), "r"(batch),
      "r"(barrier)
      : "memory");
}

// A wgmma shared-memory matrix descriptor for the 128-byte swizzle: start address, leading
// and stride byte offsets, each in 16-byte units. For a K-major operand the stride is the
// distance between 8-row groups and the leading offset is unused; for an MN-major one the
// leading offset is the distance between 64-element panels along MN.
__device__ __forceinline__ uint64_t matrix_descriptor(uint32_t address, uint32_t leading,
                                                      uint32_t stride) {
  return uint64_t{(address & 0x3FFFF) >> 4} | uint64_t{leading >> 4} << 16 |
         uint64_t{stride >> 4} << 32 | uint64_t{1} << 62;
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Moves the executing warpgroup's register budget down or up (the CTA's total must stay
// within what it was launched with).
template <int kRegisters>
__device__ __forceinline__ void registers_release() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}
template <int kRegisters>
__device__ __forceinline__ void registers_claim() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Keeps the compiler from moving accesses to registers an in-flight wgmma owns across the
// issue / wait points.
template <int N>
__device__ __forceinline__ void fence_registers(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_registers(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// The K/V ring's barriers, made by thread 0 and visible to the copy engine before any thread
// goes on: q_full (the producer's arrival), k_full / v_full per slot (the producer's, with the
// bytes its copies complete), k_empty / v_empty per slot (one arrival per consumer warp).
template <class Layout>
__device__ __forceinline__ void init_ring_barriers(const Layout& smem, int stages, int consumer_warps) {
  if (threadIdx.x == 0) {
    barrier_init(smem.q_full(), 1);
    for (int stage = 0; stage < stages; ++stage) {
      barrier_init(smem.k_full(stage), 1);
      barrier_init(smem.v_full(stage), 1);
      barrier_init(smem.k_empty(stage), consumer_warps);
      barrier_init(smem.v_empty(stage), consumer_warps);
    }
    barrier_init_fence();
  }
  __syncthreads();
}

// Inline-asm operand lists of a wgmma accumulator: C is the constraint ("+f", "=f", "+r", ...).
#define FASTDIT_OPS8(C, d, i) \
  C(d[i]), C(d[i + 1]), C(d[i + 2]), C(d[i + 3]), C(d[i + 4]), C(d[i + 5]), C(d[i + 6]), C(d[i + 7])
#define FASTDIT_OPS32(C, d) FASTDIT_OPS8(C, d, 0), FASTDIT_OPS8(C, d, 8), FASTDIT_OPS8(C, d, 16), FASTDIT_OPS8(C, d, 24)
#define FASTDIT_OPS64(C, d) \
  FASTDIT_OPS32(C, d), FASTDIT_OPS8(C, d, 32), FASTDIT_OPS8(C, d, 40), FASTDIT_OPS8(C, d, 48), FASTDIT_OPS8(C, d, 56)
#define FASTDIT_ACC32(d) FASTDIT_OPS32("+f", d)
#define FASTDIT_ACC64(d) FASTDIT_OPS64("+f", d)
#define FASTDIT_REGS32                                                                         \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define FASTDIT_REGS64                                                                         \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
  "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
  "%56, %57, %58, %59, %60, %61, %62, %63}"

__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// ---- softmax ---------------------------------------------------------------------------

// A thread's share of a 64×kKeys accumulator tile: element 4n + e sits in row g (e < 2) or
// g + 8 (e >= 2) of its warp's 16 rows, column 8n + 2·(lane % 4) + (e & 1).
//
// Folds one tile of raw scores into the running softmax of the thread's two rows: the row
// max (of raw scores; the scale is positive) and sum are updated, S becomes
// exp2(S·scale − max·scale), and `correction` says by how much O must shrink. With kMask,
// keys at or past kv_len count as −inf. With kBias, the tile's bias (raw-score units, in
// shared memory: bias[key − first_key], −inf past kv_len) is added first instead; a row may
// then have seen no key yet (its max −inf), and its probabilities are 0.
template <bool kMask, bool kBias, int kKeys>
__device__ __forceinline__ void softmax_tile(float (&s)[kKeys / 2], float (&row_max)[2],
                                             float (&row_sum)[2], float (&correction)[2],
                                             int first_key, int kv_len, float scale_log2,
                                             const float* bias) {
  const int lane = threadIdx.x % 32;
  static_assert(!(kMask && kBias), "the bias masks the keys past kv_len");
  if constexpr (kBias) {
#pragma unroll
    for (int i = 0; i < kKeys / 2; i += 2) {
      const int key = (i / 4) * 8 + (lane % 4) * 2;  // within the tile, even: a float2 pair
      const float2 b = *reinterpret_cast<const float2*>(bias + key);
      s[i] += b.x;
      s[i + 1] += b.y;
    }
  } else if constexpr (kMask) {
#pragma unroll
    for (int i = 0; i < kKeys / 2; ++i) {
      const int key = first_key + (i / 4) * 8 + (lane % 4) * 2 + (i & 1);
      if (key >= kv_len) s[i] = -INFINITY;
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float tile_max = row_max[r];
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
      tile_max = fmaxf(tile_max, fmaxf(s[4 * n + 2 * r], s[4 * n + 2 * r + 1]));
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    // Without a bias finite: every tile holds at least one key < kv_len. The first tile's
    // old max is −inf, and exp2(−inf) = 0 scales the empty O and sum. With one, a row whose
    // keys so far are all dropped keeps max −inf: 0 stands in, so its exponentials are 0.
    if constexpr (kBias) {
      if (tile_max == -INFINITY) {
        correction[r] = 1.0f;
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) s[4 * n + 2 * r] = s[4 * n + 2 * r + 1] = 0.0f;
        continue;
      }
    }
    const float scaled_max = tile_max * scale_log2;
    correction[r] = exp2_approx((row_max[r] - tile_max) * scale_log2);
    row_max[r] = tile_max;
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& x = s[4 * n + 2 * r + e];
        x = exp2_approx(fmaf(x, scale_log2, -scaled_max));
        sum += x;
      }
    }
    row_sum[r] = row_sum[r] * correction[r] + sum;
  }
}

template <int N>
__device__ __forceinline__ void rescale(float (&o)[N], const float (&correction)[2]) {
#pragma unroll
  for (int i = 0; i < N; ++i) o[i] *= correction[(i / 2) % 2];
}

}  // namespace fastdit::cuda::sm90
