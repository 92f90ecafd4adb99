// Flash attention forward (the FlashAttention-2 structure) for bfloat16 / float16 on
// mma.sync m16n8k16 tensor-core instructions with float32 accumulation.
//
// Grid (ceil(Sq / 64), H, B). A CTA of 4 warps owns a 64-row Q tile; warp w owns query
// rows [16w, 16w + 16), so softmax statistics never cross warps. Head dims are padded to
// kHeadDim ∈ {64, 128, 256}; the padding is zero-filled and its MMA steps skipped.
// Shared memory, each row padded by 8 elements so that the 8 row addresses of one
// ldmatrix fall in distinct banks:
//   Q [64][kHeadDim + 8]          loaded once
//   K [kKeyTile][kHeadDim + 8]    one key tile   (kKeyTile = 64, or 32 for kHeadDim 256)
//   V [kKeyTile][kHeadDim + 8]    one value tile
// Every global load is a 16-byte cp.async that zero-fills rows past Sq / Sk and columns
// past D / Dv (so any sequence length works). Per key tile j:
//   wait K_j, barrier → issue V_j → S = Q·K_jᵀ (16 × kKeyTile fp32 registers per warp)
//   → keys ≥ Sk set to −inf → online softmax: running row max and sum, O rescaled, with
//     log2(e) folded into the scale so each exponential is one exp2
//   → wait V_j, barrier → issue K_{j+1} → O += P·V_j, P converted in registers straight
//     from the S accumulators into A fragments (the two layouts line up).
// So each tile's load overlaps the previous step's math. At the end O is divided by the
// row sums and stored from registers, 2 elements per store.
#include <cstdint>

#include "backends/cuda/attention.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

constexpr int kQueryTile = 64;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowPad = 8;

template <int kHeadDim>
constexpr int key_tile() {
  return kHeadDim <= 128 ? 64 : 32;  // keeps S + O accumulators within the register budget
}

template <class T, int kHeadDim>
constexpr size_t shared_bytes() {
  return static_cast<size_t>(kQueryTile + 2 * key_tile<kHeadDim>()) * (kHeadDim + kRowPad) * sizeof(T);
}

struct FlashParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  int64_t q_len, kv_len;
  int64_t heads;
  int head_dim, value_dim;
  float scale_log2;  // softmax scale · log2(e)
};

// ---- PTX wrappers ----------------------------------------------------------------------

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Copies 16 bytes, of which the first `source_bytes` (16 or 0) come from global memory
// and the rest are zeros.
__device__ __forceinline__ void cp_async_16(void* shared, const void* global, int source_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)),
               "l"(global), "r"(source_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* shared) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(shared)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* shared) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(shared)));
}

// c (16×8 fp32) += a (16×16, row) · b (16×8, col).
template <class T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats rounded into one register, `low` in the lower half (the lower column).
template <class T>
__device__ __forceinline__ uint32_t pack2(float low, float high) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(low, high);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(low, high);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

// ---- tiles -------------------------------------------------------------------------------

// kRows rows of one head, starting at sequence row `first`, into shared memory; rows at
// or past `rows` and columns at or past `columns` are zero-filled.
template <class T, int kHeadDim, int kRows>
__device__ __forceinline__ void load_tile(T* shared, const T* head, int64_t row_stride,
                                          int64_t first, int64_t rows, int columns) {
  constexpr int kChunksPerRow = kHeadDim / 8;
  for (int chunk = threadIdx.x; chunk < kRows * kChunksPerRow; chunk += kThreads) {
    const int r = chunk / kChunksPerRow, column = chunk % kChunksPerRow * 8;
    const bool inside = first + r < rows && column < columns;
    const T* source = inside ? head + (first + r) * row_stride + column : head;
    cp_async_16(shared + r * (kHeadDim + kRowPad) + column, source, inside ? 16 : 0);
  }
}

// This warp's S = Q·Kᵀ (16 × kKeyTile) for one key tile.
template <class T, int kHeadDim, int kKeyTile>
__device__ __forceinline__ void query_key_scores(const T* q_tile, const T* k_tile, int head_dim,
                                                 float (&s)[kKeyTile / 8][4]) {
  constexpr int kStride = kHeadDim + kRowPad;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
    if (kk * 16 >= head_dim) continue;  // zero padding
    uint32_t a[4];
    ldmatrix_x4(a, q_tile + (warp * 16 + (lane & 15)) * kStride + kk * 16 + (lane >> 4) * 8);
#pragma unroll
    for (int nn = 0; nn < kKeyTile / 16; ++nn) {
      uint32_t b[4];
      ldmatrix_x4(b, k_tile + (nn * 16 + (lane & 7) + ((lane >> 4) << 3)) * kStride + kk * 16 +
                         ((lane >> 3) & 1) * 8);
      mma_16816<T>(s[2 * nn], a, b[0], b[1]);
      mma_16816<T>(s[2 * nn + 1], a, b[2], b[3]);
    }
  }
}

// Folds one tile of scores into the running softmax of this thread's two rows (g and
// g + 8 of the warp's 16): s becomes exp2(s·scale − max), O and the sums are rescaled.
template <int kHeadDim, int kKeyTile>
__device__ __forceinline__ void online_softmax(float (&s)[kKeyTile / 8][4], float (&o)[kHeadDim / 8][4],
                                               float (&row_max)[2], float (&row_sum)[2],
                                               int64_t first_key, int64_t kv_len, float scale_log2) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int n = 0; n < kKeyTile / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t key = first_key + n * 8 + (lane % 4) * 2 + (e & 1);
      s[n][e] = key < kv_len ? s[n][e] * scale_log2 : -INFINITY;
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int n = 0; n < kKeyTile / 8; ++n) tile_max = fmaxf(tile_max, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float new_max = fmaxf(row_max[r], tile_max);  // finite: the tile has a key < kv_len
    const float correction = exp2f(row_max[r] - new_max);
    row_max[r] = new_max;
    row_sum[r] *= correction;
#pragma unroll
    for (int n = 0; n < kHeadDim / 8; ++n) {
      o[n][2 * r] *= correction;
      o[n][2 * r + 1] *= correction;
    }
#pragma unroll
    for (int n = 0; n < kKeyTile / 8; ++n) {
      s[n][2 * r] = exp2f(s[n][2 * r] - new_max);
      s[n][2 * r + 1] = exp2f(s[n][2 * r + 1] - new_max);
      row_sum[r] += s[n][2 * r] + s[n][2 * r + 1];
    }
  }
}

// O += P·V for one tile; P's A fragments are the S accumulators of two adjacent n-tiles.
template <class T, int kHeadDim, int kKeyTile>
__device__ __forceinline__ void accumulate_values(const float (&p)[kKeyTile / 8][4], const T* v_tile,
                                                  int value_dim, float (&o)[kHeadDim / 8][4]) {
  constexpr int kStride = kHeadDim + kRowPad;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kk = 0; kk < kKeyTile / 16; ++kk) {
    const uint32_t a[4] = {pack2<T>(p[2 * kk][0], p[2 * kk][1]), pack2<T>(p[2 * kk][2], p[2 * kk][3]),
                           pack2<T>(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                           pack2<T>(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int nn = 0; nn < kHeadDim / 16; ++nn) {
      if (nn * 16 >= value_dim) continue;  // zero padding
      uint32_t b[4];
      ldmatrix_x4_trans(b, v_tile + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kStride +
                               nn * 16 + (lane >> 4) * 8);
      mma_16816<T>(o[2 * nn], a, b[0], b[1]);
      mma_16816<T>(o[2 * nn + 1], a, b[2], b[3]);
    }
  }
}

template <class T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) flash_forward(FlashParams p) {
  constexpr int kKeyTile = key_tile<kHeadDim>();
  constexpr int kStride = kHeadDim + kRowPad;
  extern __shared__ __align__(16) unsigned char shared[];
  T* q_tile = reinterpret_cast<T*>(shared);
  T* k_tile = q_tile + kQueryTile * kStride;
  T* v_tile = k_tile + kKeyTile * kStride;

  const int64_t b = blockIdx.z, h = blockIdx.y, first_query = int64_t{blockIdx.x} * kQueryTile;
  const int64_t qk_row_stride = p.heads * p.head_dim, v_row_stride = p.heads * p.value_dim;
  const T* q = static_cast<const T*>(p.q) + (b * p.q_len * p.heads + h) * p.head_dim;
  const T* k = static_cast<const T*>(p.k) + (b * p.kv_len * p.heads + h) * p.head_dim;
  const T* v = static_cast<const T*>(p.v) + (b * p.kv_len * p.heads + h) * p.value_dim;

  load_tile<T, kHeadDim, kQueryTile>(q_tile, q, qk_row_stride, first_query, p.q_len, p.head_dim);
  load_tile<T, kHeadDim, kKeyTile>(k_tile, k, qk_row_stride, 0, p.kv_len, p.head_dim);
  cp_async_commit();

  float o[kHeadDim / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  const int64_t tiles = (p.kv_len + kKeyTile - 1) / kKeyTile;
  for (int64_t j = 0; j < tiles; ++j) {
    const int64_t first_key = j * kKeyTile;
    cp_async_wait_all();
    __syncthreads();  // K_j visible to all; every warp is done with V_{j-1}
    load_tile<T, kHeadDim, kKeyTile>(v_tile, v, v_row_stride, first_key, p.kv_len, p.value_dim);
    cp_async_commit();

    float s[kKeyTile / 8][4] = {};
    query_key_scores<T, kHeadDim, kKeyTile>(q_tile, k_tile, p.head_dim, s);
    online_softmax<kHeadDim, kKeyTile>(s, o, row_max, row_sum, first_key, p.kv_len, p.scale_log2);

    cp_async_wait_all();
    __syncthreads();  // V_j visible to all; every warp is done with K_j
    if (j + 1 < tiles) {
      load_tile<T, kHeadDim, kKeyTile>(k_tile, k, qk_row_stride, first_key + kKeyTile, p.kv_len, p.head_dim);
    }
    cp_async_commit();
    accumulate_values<T, kHeadDim, kKeyTile>(s, v_tile, p.value_dim, o);
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv_sum = 1.0f / sum;
    const int64_t row = first_query + warp * 16 + lane / 4 + 8 * r;
    if (row >= p.q_len) continue;
    T* out_row = out + ((b * p.q_len + row) * p.heads + h) * p.value_dim;
#pragma unroll
    for (int n = 0; n < kHeadDim / 8; ++n) {
      const int column = n * 8 + (lane % 4) * 2;
      if (column >= p.value_dim) continue;
      *reinterpret_cast<uint32_t*>(out_row + column) =
          pack2<T>(o[n][2 * r] * inv_sum, o[n][2 * r + 1] * inv_sum);
    }
  }
}

template <class T, int kHeadDim>
void launch(const FlashParams& p, int64_t batch, cudaStream_t stream) {
  constexpr size_t kShared = shared_bytes<T, kHeadDim>();
  FASTDIT_CUDA_CHECK(cudaFuncSetAttribute(flash_forward<T, kHeadDim>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, kShared));
  const dim3 grid(static_cast<unsigned>((p.q_len + kQueryTile - 1) / kQueryTile),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(batch));
  flash_forward<T, kHeadDim><<<grid, kThreads, kShared, stream>>>(p);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_for_head_dim(const FlashParams& p, int64_t batch, cudaStream_t stream) {
  const int widest = std::max(p.head_dim, p.value_dim);
  if (widest <= 64) return launch<T, 64>(p, batch, stream);
  if (widest <= 128) return launch<T, 128>(p, batch, stream);
  launch<T, 256>(p, batch, stream);
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

}  // namespace

std::string flash_attention_refusal(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask) {
  if (q.dtype() != DType::BFloat16 && q.dtype() != DType::Float16) {
    return fastdit::detail::concat("the flash kernel takes bfloat16 or float16, not ", dtype_name(q.dtype()));
  }
  if (mask.defined()) return "the flash kernel takes no mask";
  const int64_t d = q.size(3), dv = v.size(3);
  if (d % 8 != 0 || dv % 8 != 0 || d > 256 || dv > 256) {
    return fastdit::detail::concat("the flash kernel needs head dims that are multiples of 8 up to 256, got ",
                          d, " and ", dv);
  }
  if (!aligned16(q) || !aligned16(k) || !aligned16(v)) return "q, k and v must be 16-byte aligned";
  if (q.size(2) > 65535 || q.size(0) > 65535) return "more than 65535 heads or batch items";
  return {};
}

void flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor& out) {
  FlashParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.out = out.data_ptr();
  p.q_len = q.size(1);
  p.kv_len = k.size(1);
  p.heads = q.size(2);
  p.head_dim = static_cast<int>(q.size(3));
  p.value_dim = static_cast<int>(v.size(3));
  p.scale_log2 = scale * 1.4426950408889634f;
  DeviceGuard guard(out.device());
  const cudaStream_t stream = current_stream(out.device().index);
  if (q.dtype() == DType::BFloat16) return launch_for_head_dim<__nv_bfloat16>(p, q.size(0), stream);
  launch_for_head_dim<__half>(p, q.size(0), stream);
}

}  // namespace fastdit::cuda
