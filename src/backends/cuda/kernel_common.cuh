// What the CUDA kernels share: float storage types picked at run time, float32 loads and
// round-to-nearest-even stores, a strided index walker for up to kMaxDims dims, and the
// 1-D grid-stride launch shape.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "core/tensor.h"

namespace fastdit::cuda {

constexpr int kMaxDims = 8;

// The float storage types kernels compute on (always in float32).
enum class FloatCode : uint8_t { F32, BF16, F16 };

inline FloatCode float_code(DType dtype) {
  switch (dtype) {
    case DType::Float32: return FloatCode::F32;
    case DType::BFloat16: return FloatCode::BF16;
    case DType::Float16: return FloatCode::F16;
    default:
      FASTDIT_FAIL("CUDA kernels take float32, bfloat16 or float16, not ", dtype_name(dtype));
  }
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

__device__ __forceinline__ float load_float(const void* base, FloatCode code, int64_t i) {
  switch (code) {
    case FloatCode::F32: return static_cast<const float*>(base)[i];
    case FloatCode::BF16: return to_float(static_cast<const __nv_bfloat16*>(base)[i]);
    default: return to_float(static_cast<const __half*>(base)[i]);
  }
}

// Rounds v to the precision of `code` (and back), as storing it in that dtype would.
__device__ __forceinline__ float round_to(FloatCode code, float v) {
  if (code == FloatCode::BF16) return __bfloat162float(__float2bfloat16(v));
  if (code == FloatCode::F16) return __half2float(__float2half(v));
  return v;
}

__device__ __forceinline__ void store_float(void* base, FloatCode code, int64_t i, float v) {
  switch (code) {
    case FloatCode::F32: static_cast<float*>(base)[i] = v; return;
    case FloatCode::BF16:
      static_cast<__nv_bfloat16*>(base)[i] = from_float<__nv_bfloat16>(v);
      return;
    default: static_cast<__half*>(base)[i] = from_float<__half>(v); return;
  }
}

// Element offsets of N operands walked together over one shape: element `linear` of the
// row-major shape sits at offsets[i] in operand i.
template <int N>
struct StridedIndexer {
  int rank = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};

  __device__ __forceinline__ void offsets(int64_t linear, int64_t (&out)[N]) const {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t coordinate = linear % sizes[d];
      linear /= sizes[d];
#pragma unroll
      for (int i = 0; i < N; ++i) out[i] += coordinate * strides[i][d];
    }
  }
};

// Drops size-1 dims and merges neighbours that every operand walks contiguously, so a
// contiguous copy has rank 1 and a [B, L, D] + [B, 1, D] broadcast has rank 3.
template <int N>
StridedIndexer<N> make_indexer(const Shape& shape, const std::array<Shape, N>& strides) {
  StridedIndexer<N> indexer;
  int rank = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merges = rank > 0;
    for (int i = 0; i < N && merges; ++i) {
      merges = indexer.strides[i][rank - 1] == strides[i][d] * shape[d];
    }
    if (merges) {
      indexer.sizes[rank - 1] *= shape[d];
      for (int i = 0; i < N; ++i) indexer.strides[i][rank - 1] = strides[i][d];
      continue;
    }
    FASTDIT_CHECK(rank < kMaxDims, "CUDA strided kernels take at most ", kMaxDims,
                  " non-mergeable dims, got shape ", shape_str(shape));
    indexer.sizes[rank] = shape[d];
    for (int i = 0; i < N; ++i) indexer.strides[i][rank] = strides[i][d];
    ++rank;
  }
  indexer.rank = rank;
  return indexer;
}

// Strides that walk `t`, right-aligned against `target`, as if it had `target`'s shape:
// 0 along the dims it broadcasts over.
inline Shape broadcast_strides(const Tensor& t, const Shape& target) {
  const size_t lead = target.size() - t.shape().size();
  Shape strides(target.size(), 0);
  for (size_t d = 0; d < t.shape().size(); ++d) {
    if (t.shape()[d] != 1) strides[lead + d] = t.strides()[d];
  }
  return strides;
}

constexpr int kThreadsPerBlock = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the GPU many times over,
// few enough that each thread does several elements of a large tensor.
inline unsigned grid_for(int64_t n, int threads = kThreadsPerBlock) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 132 * 64));
}

__device__ __forceinline__ int64_t global_thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Sum / max over a block whose size is a multiple of 32 (at most 1024). Every thread
// gets the result; `scratch` holds 32 floats and is reusable after the call returns.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

template <bool kMax>
__device__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
  return kMax ? warp_max(v) : warp_sum(v);
}
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  return block_reduce<false>(v, scratch);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  return block_reduce<true>(v, scratch);
}

// ---- vectorised row kernels ------------------------------------------------------------
// Memory-bound kernels move 16 bytes per load and store: E = 16 / sizeof(T) elements of
// the row dtype T ("a run"). An operand of another float dtype is read E elements at a
// time too (32 bytes of float32 against a bfloat16 row, 8 bytes of bfloat16 against a
// float32 row). Launchers check that every base pointer is 16-byte aligned and that rows
// are whole runs, so every run starts aligned.

// 16 bytes of T.
template <class T>
struct alignas(16) Vector {
  static constexpr int kSize = 16 / sizeof(T);
  T values[kSize];
};

template <class T>
constexpr int kRun = Vector<T>::kSize;

inline int run_length(DType dtype) { return 16 / static_cast<int>(dtype_size(dtype)); }

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// E elements of T from p on, as float32.
template <int E, class T>
__device__ __forceinline__ void load_run(const T* p, float (&out)[E]) {
  constexpr int kPer = Vector<T>::kSize;
  if constexpr (E >= kPer) {
    static_assert(E % kPer == 0, "a run is whole 16-byte vectors or half of one");
#pragma unroll
    for (int c = 0; c < E / kPer; ++c) {
      const Vector<T> v = reinterpret_cast<const Vector<T>*>(p)[c];
#pragma unroll
      for (int e = 0; e < kPer; ++e) out[c * kPer + e] = to_float(v.values[e]);
    }
  } else {
    struct alignas(E * sizeof(T)) Part {
      T values[E];
    };
    const Part v = *reinterpret_cast<const Part*>(p);
#pragma unroll
    for (int e = 0; e < E; ++e) out[e] = to_float(v.values[e]);
  }
}

// E elements of an operand of any float dtype from element i on, as float32.
template <int E>
__device__ __forceinline__ void load_run(const void* base, FloatCode code, int64_t i, float (&out)[E]) {
  switch (code) {
    case FloatCode::F32: return load_run<E>(static_cast<const float*>(base) + i, out);
    case FloatCode::BF16: return load_run<E>(static_cast<const __nv_bfloat16*>(base) + i, out);
    default: return load_run<E>(static_cast<const __half*>(base) + i, out);
  }
}

// One run of T, rounded to nearest even, to p.
template <class T>
__device__ __forceinline__ void store_run(T* p, const float (&v)[kRun<T>]) {
  Vector<T> out;
#pragma unroll
  for (int e = 0; e < kRun<T>; ++e) out.values[e] = from_float<T>(v[e]);
  *reinterpret_cast<Vector<T>*>(p) = out;
}

// E elements from float32 to p as T, rounded to nearest even: whole 16-byte vectors, or
// one E·sizeof(T)-byte store (p aligned to it).
template <int E, class T>
__device__ __forceinline__ void store_elements(T* p, const float (&v)[E]) {
  constexpr int kPer = Vector<T>::kSize;
  if constexpr (E >= kPer) {
    static_assert(E % kPer == 0, "a run is whole 16-byte vectors or half of one");
#pragma unroll
    for (int c = 0; c < E / kPer; ++c) {
      Vector<T> out;
#pragma unroll
      for (int e = 0; e < kPer; ++e) out.values[e] = from_float<T>(v[c * kPer + e]);
      reinterpret_cast<Vector<T>*>(p)[c] = out;
    }
  } else {
    struct alignas(E * sizeof(T)) Part {
      T values[E];
    };
    Part out;
#pragma unroll
    for (int e = 0; e < E; ++e) out.values[e] = from_float<T>(v[e]);
    *reinterpret_cast<Part*>(p) = out;
  }
}

// E elements to an output of any float dtype from element i on (the counterpart of the
// load_run above: a float32 output of a bfloat16 row takes 32 bytes per run).
template <int E>
__device__ __forceinline__ void store_run(void* base, FloatCode code, int64_t i, const float (&v)[E]) {
  switch (code) {
    case FloatCode::F32: return store_elements<E>(static_cast<float*>(base) + i, v);
    case FloatCode::BF16: return store_elements<E>(static_cast<__nv_bfloat16*>(base) + i, v);
    default: return store_elements<E>(static_cast<__half*>(base) + i, v);
  }
}

// A [..., L, D] or [..., 1, D] per-row operand (modulation shift / scale, a gate) of a
// [..., L, D] row kernel, the leading dims flattened to one b (an item, or a frame of an
// item): row r = b·L + l starts at b·batch_stride + l·seq_stride.
struct RowOperand {
  const void* data = nullptr;  // null: the operand is absent
  FloatCode code = FloatCode::F32;
  int64_t batch_stride = 0, seq_stride = 0;

  __device__ int64_t row_offset(int64_t row, int64_t seq) const {
    return row / seq * batch_stride + row % seq * seq_stride;
  }
};

// `t` as a per-row operand of x [..., L, D]: [..., 1, D] or [..., L, D] (x's leading dims),
// contiguous.
inline RowOperand row_operand(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  const int64_t rank = x.dim(), seq = x.size(-2), d = x.size(-1);
  bool fits = rank >= 2 && t.dim() == rank && t.is_contiguous() && t.size(-1) == d &&
              (t.size(-2) == 1 || t.size(-2) == seq);
  for (int64_t i = 0; fits && i + 2 < rank; ++i) fits = t.size(i) == x.size(i);
  FASTDIT_CHECK(fits, op, ": ", name, " ", shape_str(t.shape()), " must be contiguous and of x's shape ",
                shape_str(x.shape()), " or that with 1 in dim -2");
  return {t.data_ptr(), float_code(t.dtype()), t.size(-2) * d, t.size(-2) == 1 ? 0 : d};
}

// Sum over the `group` consecutive threads that share a row (a multiple of 32 dividing
// blockDim.x, itself at most 1024); every thread of the group gets it. Every thread of
// the block must call it (beyond one warp it synchronises the block); `scratch` holds
// blockDim.x / 32 floats.
__device__ __forceinline__ float group_sum(float v, int group, float* scratch) {
  v = warp_sum(v);
  if (group == 32) return v;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group_warps = group / 32;
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int first = warp - warp % group_warps;
  float total = 0.0f;
  for (int w = 0; w < group_warps; ++w) total += scratch[first + w];
  return total;
}

// The launch of a row kernel that holds each row's `runs` 16-byte runs in registers:
// `group` threads per row, the fewest (32, 64, ... up to block_threads) that keep each
// thread at most preferred_runs runs, or else at most max_runs; the runs per thread; the
// CTAs for `rows` rows. group == 0: no group can hold the row.
struct RowLaunch {
  int group = 0, runs_per_thread = 0;
  unsigned blocks = 0;
};
inline RowLaunch row_launch(int64_t runs, int64_t rows, int block_threads, int max_runs, int preferred_runs) {
  RowLaunch launch;
  for (int limit : {preferred_runs, max_runs}) {
    for (int group = 32; group <= block_threads && launch.group == 0; group *= 2) {
      if (static_cast<int64_t>(group) * limit >= runs) launch.group = group;
    }
  }
  if (launch.group == 0) return launch;
  launch.runs_per_thread = static_cast<int>((runs + launch.group - 1) / launch.group);
  const int64_t rows_per_block = block_threads / launch.group;
  launch.blocks = static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block);
  return launch;
}

// Calls f(std::integral_constant<int, N>{}) with N = runs (1 ≤ runs ≤ kMaxRuns): a row
// kernel's runs per thread as the template argument that sizes its registers.
template <int kMaxRuns, int N = 1, class F>
void with_runs(int runs, F&& f) {
  if constexpr (N < kMaxRuns) {
    if (runs > N) return with_runs<kMaxRuns, N + 1>(runs, std::forward<F>(f));
  }
  f(std::integral_constant<int, N>{});
}

// Threads for a one-block-per-row kernel: about one per 4 elements, 32 to 512.
inline int threads_for_row(int64_t length) {
  int threads = 32;
  while (threads < 512 && threads * 4 < length) threads *= 2;
  return threads;
}

// Two floats rounded into one 32-bit register of two bfloat16 / float16 values, `low` in
// the lower half (the lower column of an MMA fragment).
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

}  // namespace fastdit::cuda
