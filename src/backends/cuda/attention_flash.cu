// Flash attention forward (the FlashAttention-2 structure) for bfloat16 / float16 on
// mma.sync m16n8k16 tensor-core instructions with float32 accumulation: the generic kernel,
// for every call the Hopper kernel (attention_flash_sm90.cu) does not take.
//
// Grid (ceil(Sq / kQueryRows), H, B). With grouped K/V heads (Hkv dividing H) the CTA of
// query head h streams K/V head h / (H / Hkv). A CTA of 4 warps owns a Q tile; each warp owns
// kRowBlocks 16-row blocks of it, so softmax statistics never cross warps. Head dims are
// padded to kHeadDim ∈ {64, 128, 256}; the padding is zero-filled and its MMA steps
// skipped. Tile shapes (the Tile table below):
//   kHeadDim 64, 128: 128 query rows (2 blocks per warp), 64-key tiles
//   kHeadDim 256:      64 query rows (1 block per warp),  32-key tiles
// Shared memory, each row padded by 8 elements so that the 8 row addresses of one
// ldmatrix fall in distinct banks: Q [kQueryRows][kHeadDim + 8] loaded once, and one
// K and one V tile [kKeys][kHeadDim + 8].
// Every global load is a 16-byte cp.async that zero-fills rows past Sq / Sk and columns
// past D / Dv (so any sequence length works). Per key tile j:
//   wait K_j, barrier → issue V_j → S = Q·K_jᵀ (fp32 registers)
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

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowPad = 8;

// The tile table. Two 16-row MMA blocks per warp let every K and V fragment loaded from
// shared memory feed two MMAs; at head dim 256 the accumulators leave room for one.
template <int kHeadDim>
struct Tile {
  static constexpr int kRowBlocks = kHeadDim <= 128 ? 2 : 1;   // 16-row MMA blocks per warp
  static constexpr int kQueryRows = kWarps * 16 * kRowBlocks;  // per CTA
  static constexpr int kKeys = kHeadDim <= 128 ? 64 : 32;      // per key/value tile
  static constexpr int kStride = kHeadDim + kRowPad;           // elements per shared row
  static_assert(kKeys % kKeyBiasChunk == 0 && kKeyBiasAlign % kKeys == 0, "a key tile is whole bias chunks");
  static constexpr size_t tiles_bytes(size_t element_size) {
    return static_cast<size_t>(kQueryRows + 2 * kKeys) * kStride * element_size;
  }
  // The key tile's bias (float32) after the Q, K and V tiles.
  static constexpr size_t shared_bytes(size_t element_size) { return tiles_bytes(element_size) + kKeys * 4; }
};

struct FlashParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  int64_t q_len, kv_len;
  int64_t heads, kv_heads;  // query head h reads K/V head h / (heads / kv_heads)
  int head_dim, value_dim;
  float scale_log2;  // softmax scale · log2(e)
  // Optional additive key bias (a key mask), float32 rows of bias_batch_stride (0: one row
  // for the batch), in natural units (added to scale · q·k); −inf drops a key.
  // tile_flags: KeyBias::tile_flags, rows of bias_batch_stride / kKeyBiasChunk.
  const float* key_bias;
  const int32_t* tile_flags;
  int64_t bias_batch_stride;
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
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
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

// Per-warp register state: kBlocks 16-row MMA blocks of scores S (then probabilities P)
// and output O, and per thread the running max and sum of its two rows (g, g + 8) of each
// block.
template <int kHeadDim>
struct WarpState {
  static constexpr int kBlocks = Tile<kHeadDim>::kRowBlocks;
  static constexpr int kKeys = Tile<kHeadDim>::kKeys;
  float s[kBlocks][kKeys / 8][4];
  float o[kBlocks][kHeadDim / 8][4];
  float row_max[kBlocks][2];
  float row_sum[kBlocks][2];
};

// S = Q·Kᵀ for this warp's rows and one key tile. Each K fragment feeds every row block.
template <class T, int kHeadDim>
__device__ __forceinline__ void query_key_scores(const T* q_tile, const T* k_tile, int head_dim,
                                                 WarpState<kHeadDim>& w) {
  using Tiles = Tile<kHeadDim>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int m = 0; m < Tiles::kRowBlocks; ++m) {
#pragma unroll
    for (int n = 0; n < Tiles::kKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) w.s[m][n][e] = 0.0f;
    }
  }
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
    if (kk * 16 >= head_dim) continue;  // zero padding
    uint32_t a[Tiles::kRowBlocks][4];
#pragma unroll
    for (int m = 0; m < Tiles::kRowBlocks; ++m) {
      const int row = (warp * Tiles::kRowBlocks + m) * 16 + (lane & 15);
      ldmatrix_x4(a[m], q_tile + row * Tiles::kStride + kk * 16 + (lane >> 4) * 8);
    }
#pragma unroll
    for (int nn = 0; nn < Tiles::kKeys / 16; ++nn) {
      uint32_t b[4];
      ldmatrix_x4(b, k_tile + (nn * 16 + (lane & 7) + ((lane >> 4) << 3)) * Tiles::kStride +
                         kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
      for (int m = 0; m < Tiles::kRowBlocks; ++m) {
        mma_16816<T>(w.s[m][2 * nn], a[m], b[0], b[1]);
        mma_16816<T>(w.s[m][2 * nn + 1], a[m], b[2], b[3]);
      }
    }
  }
}

// Folds one tile of scores into the running softmax: S becomes exp2(S·scale − max), O and
// the sums are rescaled by exp2(old max − new max).
// With a key bias (the tile's, in shared memory: bias[key − first_key]), it is added times
// log2(e); a row may then have seen no key yet (max −inf), and 0 stands in for its max so
// that its exponentials are 0, not NaN.
template <int kHeadDim>
__device__ __forceinline__ void online_softmax(WarpState<kHeadDim>& w, int64_t first_key,
                                               int64_t kv_len, float scale_log2, const float* bias) {
  using Tiles = Tile<kHeadDim>;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int m = 0; m < Tiles::kRowBlocks; ++m) {
#pragma unroll
    for (int n = 0; n < Tiles::kKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = first_key + n * 8 + (lane % 4) * 2 + (e & 1);
        const float added = bias != nullptr && key < kv_len ? bias[key - first_key] * 1.4426950408889634f : 0.0f;
        w.s[m][n][e] = key < kv_len ? fmaf(w.s[m][n][e], scale_log2, added) : -INFINITY;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int n = 0; n < Tiles::kKeys / 8; ++n) {
        tile_max = fmaxf(tile_max, fmaxf(w.s[m][n][2 * r], w.s[m][n][2 * r + 1]));
      }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      // Finite without a bias (a key < kv_len is in every tile).
      const float new_max = fmaxf(w.row_max[m][r], tile_max);
      const float base = new_max == -INFINITY ? 0.0f : new_max;
      const float correction = exp2f(w.row_max[m][r] - base);
      w.row_max[m][r] = new_max;
      w.row_sum[m][r] *= correction;
#pragma unroll
      for (int n = 0; n < kHeadDim / 8; ++n) {
        w.o[m][n][2 * r] *= correction;
        w.o[m][n][2 * r + 1] *= correction;
      }
#pragma unroll
      for (int n = 0; n < Tiles::kKeys / 8; ++n) {
        w.s[m][n][2 * r] = exp2f(w.s[m][n][2 * r] - base);
        w.s[m][n][2 * r + 1] = exp2f(w.s[m][n][2 * r + 1] - base);
        w.row_sum[m][r] += w.s[m][n][2 * r] + w.s[m][n][2 * r + 1];
      }
    }
  }
}

// O += P·V for one tile; P's A fragments are the S accumulators of two adjacent n-tiles,
// and each V fragment feeds every row block.
template <class T, int kHeadDim>
__device__ __forceinline__ void accumulate_values(const T* v_tile, int value_dim,
                                                  WarpState<kHeadDim>& w) {
  using Tiles = Tile<kHeadDim>;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kk = 0; kk < Tiles::kKeys / 16; ++kk) {
    uint32_t a[Tiles::kRowBlocks][4];
#pragma unroll
    for (int m = 0; m < Tiles::kRowBlocks; ++m) {
      a[m][0] = pack2<T>(w.s[m][2 * kk][0], w.s[m][2 * kk][1]);
      a[m][1] = pack2<T>(w.s[m][2 * kk][2], w.s[m][2 * kk][3]);
      a[m][2] = pack2<T>(w.s[m][2 * kk + 1][0], w.s[m][2 * kk + 1][1]);
      a[m][3] = pack2<T>(w.s[m][2 * kk + 1][2], w.s[m][2 * kk + 1][3]);
    }
#pragma unroll
    for (int nn = 0; nn < kHeadDim / 16; ++nn) {
      if (nn * 16 >= value_dim) continue;  // zero padding
      uint32_t b[4];
      ldmatrix_x4_trans(b, v_tile +
                               (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * Tiles::kStride +
                               nn * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int m = 0; m < Tiles::kRowBlocks; ++m) {
        mma_16816<T>(w.o[m][2 * nn], a[m], b[0], b[1]);
        mma_16816<T>(w.o[m][2 * nn + 1], a[m], b[2], b[3]);
      }
    }
  }
}

// O divided by the row sums, rounded, stored from registers 2 elements at a time.
template <class T, int kHeadDim>
__device__ __forceinline__ void store_output(const WarpState<kHeadDim>& w, T* out_head,
                                             int64_t first_query, int64_t q_len, int64_t row_stride,
                                             int value_dim) {
  using Tiles = Tile<kHeadDim>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int m = 0; m < Tiles::kRowBlocks; ++m) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float sum = w.row_sum[m][r];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;  // 0: every key dropped (zeros)
      const int64_t row = first_query + (warp * Tiles::kRowBlocks + m) * 16 + lane / 4 + 8 * r;
      if (row >= q_len) continue;
#pragma unroll
      for (int n = 0; n < kHeadDim / 8; ++n) {
        const int column = n * 8 + (lane % 4) * 2;
        if (column >= value_dim) continue;
        *reinterpret_cast<uint32_t*>(out_head + row * row_stride + column) =
            pack2<T>(w.o[m][n][2 * r] * inv_sum, w.o[m][n][2 * r + 1] * inv_sum);
      }
    }
  }
}

template <class T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) flash_forward(FlashParams p) {
  using Tiles = Tile<kHeadDim>;
  extern __shared__ __align__(16) unsigned char shared[];
  T* q_tile = reinterpret_cast<T*>(shared);
  T* k_tile = q_tile + Tiles::kQueryRows * Tiles::kStride;
  T* v_tile = k_tile + Tiles::kKeys * Tiles::kStride;
  float* bias_tile = reinterpret_cast<float*>(shared + Tiles::tiles_bytes(sizeof(T)));

  const int64_t b = blockIdx.z, h = blockIdx.y,
                first_query = int64_t{blockIdx.x} * Tiles::kQueryRows;
  const int64_t kv_h = h / (p.heads / p.kv_heads);
  const int64_t q_row_stride = p.heads * p.head_dim, k_row_stride = p.kv_heads * p.head_dim;
  const int64_t v_row_stride = p.kv_heads * p.value_dim, out_row_stride = p.heads * p.value_dim;
  const T* q = static_cast<const T*>(p.q) + (b * p.q_len * p.heads + h) * p.head_dim;
  const T* k = static_cast<const T*>(p.k) + (b * p.kv_len * p.kv_heads + kv_h) * p.head_dim;
  const T* v = static_cast<const T*>(p.v) + (b * p.kv_len * p.kv_heads + kv_h) * p.value_dim;

  load_tile<T, kHeadDim, Tiles::kQueryRows>(q_tile, q, q_row_stride, first_query, p.q_len,
                                            p.head_dim);
  const float* bias_row = p.key_bias != nullptr ? p.key_bias + b * p.bias_batch_stride : nullptr;
  const int32_t* flag_row = p.key_bias != nullptr ? p.tile_flags + b * (p.bias_batch_stride / kKeyBiasChunk) : nullptr;
  // The tile's bias rides with its K tile (the padded rows hold every tile whole); a tile
  // whose flags are all 0 adds none, read or not.
  const auto tile_biased = [&](int64_t j) {
    if (flag_row == nullptr) return false;
    int32_t any = 0;
#pragma unroll
    for (int c = 0; c < Tiles::kKeys / kKeyBiasChunk; ++c) any |= flag_row[j * (Tiles::kKeys / kKeyBiasChunk) + c];
    return any != 0;
  };
  const auto load_bias = [&](int64_t j) {
    if (bias_row == nullptr) return;
    for (int chunk = threadIdx.x; chunk < Tiles::kKeys / 4; chunk += kThreads) {
      cp_async_16(bias_tile + chunk * 4, bias_row + j * Tiles::kKeys + chunk * 4, 16);
    }
  };
  load_tile<T, kHeadDim, Tiles::kKeys>(k_tile, k, k_row_stride, 0, p.kv_len, p.head_dim);
  load_bias(0);
  cp_async_commit();

  WarpState<kHeadDim> w;
#pragma unroll
  for (int m = 0; m < Tiles::kRowBlocks; ++m) {
#pragma unroll
    for (int n = 0; n < kHeadDim / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) w.o[m][n][e] = 0.0f;
    }
    w.row_max[m][0] = w.row_max[m][1] = -INFINITY;
    w.row_sum[m][0] = w.row_sum[m][1] = 0.0f;
  }
  const int64_t tiles = (p.kv_len + Tiles::kKeys - 1) / Tiles::kKeys;
  for (int64_t j = 0; j < tiles; ++j) {
    const int64_t first_key = j * Tiles::kKeys;
    cp_async_wait_all();
    __syncthreads();  // K_j visible to all; every warp is done with V_{j-1}
    load_tile<T, kHeadDim, Tiles::kKeys>(v_tile, v, v_row_stride, first_key, p.kv_len, p.value_dim);
    cp_async_commit();

    query_key_scores<T, kHeadDim>(q_tile, k_tile, p.head_dim, w);
    online_softmax<kHeadDim>(w, first_key, p.kv_len, p.scale_log2, tile_biased(j) ? bias_tile : nullptr);

    cp_async_wait_all();
    __syncthreads();  // V_j visible to all; every warp is done with K_j
    if (j + 1 < tiles) {
      load_tile<T, kHeadDim, Tiles::kKeys>(k_tile, k, k_row_stride, first_key + Tiles::kKeys,
                                           p.kv_len, p.head_dim);
      load_bias(j + 1);
    }
    cp_async_commit();
    accumulate_values<T, kHeadDim>(v_tile, p.value_dim, w);
  }
  T* out = static_cast<T*>(p.out) + (b * p.q_len * p.heads + h) * p.value_dim;
  store_output<T, kHeadDim>(w, out, first_query, p.q_len, out_row_stride, p.value_dim);
}

template <class T, int kHeadDim>
void launch(const FlashParams& p, int64_t batch, cudaStream_t stream) {
  using Tiles = Tile<kHeadDim>;
  const size_t shared = Tiles::shared_bytes(sizeof(T));
  FASTDIT_CUDA_CHECK(cudaFuncSetAttribute(flash_forward<T, kHeadDim>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, shared));
  const dim3 grid(static_cast<unsigned>((p.q_len + Tiles::kQueryRows - 1) / Tiles::kQueryRows),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(batch));
  flash_forward<T, kHeadDim><<<grid, kThreads, shared, stream>>>(p);
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
    return fastdit::detail::concat("the flash kernel takes bfloat16 or float16, not ",
                                   dtype_name(q.dtype()));
  }
  if (mask.defined() && !is_key_mask(mask, q.size(0), k.size(1))) {
    return fastdit::detail::concat("the flash kernel takes key masks only ([B or 1, 1, 1, Sk] or Sk elements), not ",
                                   shape_str(mask.shape()));
  }
  const int64_t d = q.size(3), dv = v.size(3);
  if (d % 8 != 0 || dv % 8 != 0 || d > 256 || dv > 256) {
    return fastdit::detail::concat(
        "the flash kernel needs head dims that are multiples of 8 up to 256, got ", d, " and ", dv);
  }
  if (!aligned16(q) || !aligned16(k) || !aligned16(v)) return "q, k and v must be 16-byte aligned";
  if (q.size(2) > 65535 || q.size(0) > 65535) return "more than 65535 heads or batch items";
  return {};
}

bool is_key_mask(const Tensor& mask, int64_t batch, int64_t kv_len) {
  const Shape& s = mask.shape();
  if (mask.numel() == kv_len && !s.empty() && s.back() == kv_len) return true;  // shared by all
  return s.size() == 4 && (s[0] == batch || s[0] == 1) && s[1] == 1 && s[2] == 1 && s[3] == kv_len;
}

namespace {

// mask (Bool: false drops the key; float: added) -> float32 [rows][stride] (see KeyBias),
// values times `factor`, and a flag per kKeyBiasChunk keys: one warp per chunk (stride is
// a whole number of chunks, so a warp never straddles rows and whole warps fall past the end).
__global__ void key_bias_kernel(const void* mask, bool is_bool, int float_kind, int64_t rows, int64_t kv_len,
                                int64_t stride, float factor, float* out, int32_t* flags) {
  static_assert(kKeyBiasChunk == 32, "a chunk is one warp");
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= rows * stride) return;
  const int64_t row = i / stride, key = i % stride;
  const int64_t at = row * kv_len + key;
  float value = -INFINITY;
  if (key >= kv_len) {
  } else if (is_bool) {
    value = static_cast<const bool*>(mask)[at] ? 0.0f : -INFINITY;
  } else if (float_kind == 0) {
    value = static_cast<const float*>(mask)[at] * factor;
  } else if (float_kind == 1) {
    value = __bfloat162float(static_cast<const __nv_bfloat16*>(mask)[at]) * factor;
  } else {
    value = __half2float(static_cast<const __half*>(mask)[at]) * factor;
  }
  out[i] = value;
  const unsigned biased = __ballot_sync(0xffffffffu, key < kv_len && !(value == 0.0f));
  if (threadIdx.x % 32 == 0) flags[i / kKeyBiasChunk] = biased != 0;
}

}  // namespace

KeyBias key_bias_from_mask(const Tensor& mask, int64_t kv_len, float factor) {
  const int64_t rows = mask.shape().size() == 4 ? mask.size(0) : 1;
  const int64_t stride = (kv_len + kKeyBiasAlign - 1) / kKeyBiasAlign * kKeyBiasAlign;
  Tensor bias = Tensor::empty({rows, stride}, DType::Float32, mask.device());
  Tensor flags = Tensor::empty({rows, stride / kKeyBiasChunk}, DType::Int32, mask.device());
  const int kind = mask.dtype() == DType::Float32 ? 0 : mask.dtype() == DType::BFloat16 ? 1 : 2;
  FASTDIT_CHECK(mask.dtype() == DType::Bool || mask.dtype() == DType::Float32 || mask.dtype() == DType::BFloat16 ||
                    mask.dtype() == DType::Float16,
                "attention mask of dtype ", dtype_name(mask.dtype()), " (Bool or a float dtype)");
  const int64_t n = rows * stride;
  key_bias_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, current_stream(mask.device().index)>>>(
      mask.data_ptr(), mask.dtype() == DType::Bool, kind, rows, kv_len, stride, factor, bias.data<float>(),
      flags.data<int32_t>());
  FASTDIT_CUDA_CHECK_LAUNCH();
  return {bias, flags};
}

void flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor& out,
                     const Tensor& mask) {
  DeviceGuard device_guard(out.device());
  if (flash_attention_sm90_serves(q, k, v, scale)) {
    // The Hopper kernel adds the bias to raw scores: divided by the (positive) scale.
    const KeyBias bias = mask.defined() ? key_bias_from_mask(mask, k.size(1), 1.0f / scale) : KeyBias{};
    return flash_attention_sm90(q, k, v, scale, bias, out);
  }
  const KeyBias bias = mask.defined() ? key_bias_from_mask(mask, k.size(1), 1.0f) : KeyBias{};
  FlashParams p{};
  if (bias.defined()) {
    p.key_bias = bias.bias.data<float>();
    p.tile_flags = bias.tile_flags.data<int32_t>();
    p.bias_batch_stride = bias.bias.size(0) == 1 ? 0 : bias.bias.size(1);
  }
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.out = out.data_ptr();
  p.q_len = q.size(1);
  p.kv_len = k.size(1);
  p.heads = q.size(2);
  p.kv_heads = k.size(2);
  p.head_dim = static_cast<int>(q.size(3));
  p.value_dim = static_cast<int>(v.size(3));
  p.scale_log2 = scale * 1.4426950408889634f;
  const cudaStream_t stream = current_stream(out.device().index);
  if (q.dtype() == DType::BFloat16) return launch_for_head_dim<__nv_bfloat16>(p, q.size(0), stream);
  launch_for_head_dim<__half>(p, q.size(0), stream);
}

}  // namespace fastdit::cuda
