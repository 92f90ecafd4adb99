// copy_convert: a strided gather into a contiguous tensor of the same shape, converting
// the dtype on the way. One thread per output element (grid-stride); the source offset
// comes from a StridedIndexer whose dims are merged first, so contiguous sources walk
// rank 1. A (batched) transpose — the source contiguous along the output's rows rather
// than its columns, e.g. a patch embedding's [D, L] turned into tokens [L, D] — goes
// through 32x32 tiles in shared memory instead, so reads and writes both coalesce.
// Float conversions round to nearest even. Same-dtype copies of any type move raw
// elements by size; the few remaining conversions (integers, float64, float8) go
// through the CPU, where core already implements them all.
#include <cstdint>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

template <class Source, class Target>
__device__ __forceinline__ Target convert(Source v) {
  if constexpr (std::is_same_v<Source, Target>) {
    return v;
  } else {
    return from_float<Target>(to_float(v));
  }
}

template <class Source, class Target>
__global__ void gather_convert(const Source* src, Target* dst, StridedIndexer<1> indexer,
                               int64_t n) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    int64_t offset[1];
    indexer.offsets(i, offset);
    dst[i] = convert<Source, Target>(src[offset[0]]);
  }
}

// dst [batches, rows, cols] contiguous from a source whose element (b, r, c) sits at
// b·batch_stride + r + c·col_stride: a tile is read along r and written along c.
struct TransposeShape {
  int64_t batches, rows, cols, batch_stride, col_stride;
};

constexpr int kTile = 32, kTileRowsPerPass = 8;

template <class Source, class Target>
__global__ void transpose_convert(const Source* src, Target* dst, TransposeShape t) {
  __shared__ Target tile[kTile][kTile + 1];  // [c][r]; the padding spreads a column over banks
  const int64_t tiles_r = (t.rows + kTile - 1) / kTile, tiles_c = (t.cols + kTile - 1) / kTile;
  const int64_t tiles = t.batches * tiles_r * tiles_c;
  for (int64_t i = blockIdx.x; i < tiles; i += gridDim.x) {
    const int64_t b = i / (tiles_r * tiles_c), r0 = i / tiles_c % tiles_r * kTile, c0 = i % tiles_c * kTile;
    for (int k = threadIdx.y; k < kTile; k += kTileRowsPerPass) {
      const int64_t r = r0 + threadIdx.x, c = c0 + k;
      if (r < t.rows && c < t.cols)
        tile[k][threadIdx.x] = convert<Source, Target>(src[b * t.batch_stride + r + c * t.col_stride]);
    }
    __syncthreads();
    for (int k = threadIdx.y; k < kTile; k += kTileRowsPerPass) {
      const int64_t r = r0 + k, c = c0 + threadIdx.x;
      if (r < t.rows && c < t.cols) dst[(b * t.rows + r) * t.cols + c] = tile[threadIdx.x][k];
    }
    __syncthreads();
  }
}

// The merged source walk is a batched transpose: its last dim strided, the one before it
// contiguous (and a batch dim at most in front).
bool as_transpose(const StridedIndexer<1>& indexer, TransposeShape& t) {
  const int rank = indexer.rank;
  if (rank < 2 || rank > 3 || indexer.strides[0][rank - 1] == 1 || indexer.strides[0][rank - 2] != 1) return false;
  t.batches = rank == 3 ? indexer.sizes[0] : 1;
  t.batch_stride = rank == 3 ? indexer.strides[0][0] : 0;
  t.rows = indexer.sizes[rank - 2];
  t.cols = indexer.sizes[rank - 1];
  t.col_stride = indexer.strides[0][rank - 1];
  return true;
}

template <class Source, class Target>
void launch(const Tensor& src, Tensor& dst, const StridedIndexer<1>& indexer, cudaStream_t stream) {
  const int64_t n = dst.numel();
  TransposeShape t;
  if (as_transpose(indexer, t)) {
    const int64_t tiles = t.batches * ((t.rows + kTile - 1) / kTile) * ((t.cols + kTile - 1) / kTile);
    transpose_convert<<<static_cast<unsigned>(std::min<int64_t>(tiles, 132 * 32)), dim3(kTile, kTileRowsPerPass), 0,
                        stream>>>(static_cast<const Source*>(src.data_ptr()), static_cast<Target*>(dst.data_ptr()), t);
    FASTDIT_CUDA_CHECK_LAUNCH();
    return;
  }
  gather_convert<<<grid_for(n), kThreadsPerBlock, 0, stream>>>(
      static_cast<const Source*>(src.data_ptr()), static_cast<Target*>(dst.data_ptr()), indexer, n);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

template <class Source>
void launch_to(const Tensor& src, Tensor& dst, const StridedIndexer<1>& indexer,
               cudaStream_t stream) {
  switch (dst.dtype()) {
    case DType::Float32: return launch<Source, float>(src, dst, indexer, stream);
    case DType::BFloat16: return launch<Source, __nv_bfloat16>(src, dst, indexer, stream);
    default: return launch<Source, __half>(src, dst, indexer, stream);
  }
}

// Same dtype, source rows contiguous in 16-byte runs (a contiguous copy, or a permute that
// keeps the last dim, such as sequence parallelism's peer-major packing of q, k, v): one
// thread per 16-byte vector, so one index computation per 16 bytes instead of per element.
__global__ void gather_vectors(const uint4* src, uint4* dst, StridedIndexer<1> indexer, int64_t n) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    int64_t offset[1];
    indexer.offsets(i, offset);
    dst[i] = src[offset[0]];
  }
}

// The walk in 16-byte vectors when every row is whole vectors, every other stride a whole
// number of them and both pointers 16-byte aligned.
bool as_vectors(const Tensor& src, const Tensor& dst, const StridedIndexer<1>& indexer,
                StridedIndexer<1>& vectors) {
  const int64_t per = 16 / static_cast<int64_t>(src.element_size());
  const int rank = indexer.rank;
  if (rank == 0 || indexer.strides[0][rank - 1] != 1 || indexer.sizes[rank - 1] % per != 0 ||
      reinterpret_cast<uintptr_t>(src.data_ptr()) % 16 != 0 || reinterpret_cast<uintptr_t>(dst.data_ptr()) % 16 != 0)
    return false;
  vectors = indexer;
  vectors.sizes[rank - 1] /= per;
  for (int d = 0; d < rank - 1; ++d) {
    if (indexer.strides[0][d] % per != 0) return false;
    vectors.strides[0][d] /= per;
  }
  return true;
}

// Same dtype: elements move as opaque words of their size.
void launch_raw(const Tensor& src, Tensor& dst, const StridedIndexer<1>& indexer,
                cudaStream_t stream) {
  StridedIndexer<1> vectors;
  if (src.element_size() <= 16 && 16 % src.element_size() == 0 && as_vectors(src, dst, indexer, vectors)) {
    const int64_t n = dst.nbytes() / 16;
    gather_vectors<<<grid_for(n), kThreadsPerBlock, 0, stream>>>(static_cast<const uint4*>(src.data_ptr()),
                                                                 static_cast<uint4*>(dst.data_ptr()), vectors, n);
    FASTDIT_CUDA_CHECK_LAUNCH();
    return;
  }
  switch (src.element_size()) {
    case 1: return launch<uint8_t, uint8_t>(src, dst, indexer, stream);
    case 2: return launch<uint16_t, uint16_t>(src, dst, indexer, stream);
    case 4: return launch<uint32_t, uint32_t>(src, dst, indexer, stream);
    default: return launch<uint64_t, uint64_t>(src, dst, indexer, stream);
  }
}

bool is_kernel_float(DType dtype) {
  return dtype == DType::Float32 || dtype == DType::BFloat16 || dtype == DType::Float16;
}

void copy_convert_through_host(Tensor& dst, const Tensor& src) {
  const Tensor converted = src.to(Device::cpu()).to(dst.dtype());
  dst.copy_(converted);
}

}  // namespace

void copy_convert(Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  const bool same = src.dtype() == dst.dtype();
  if (!same && !(is_kernel_float(src.dtype()) && is_kernel_float(dst.dtype()))) {
    return copy_convert_through_host(dst, src);
  }
  DeviceGuard guard(dst.device());
  const cudaStream_t stream = current_stream(dst.device().index);
  const auto indexer = make_indexer<1>(src.shape(), {src.strides()});
  if (same) return launch_raw(src, dst, indexer, stream);
  switch (src.dtype()) {
    case DType::Float32: return launch_to<float>(src, dst, indexer, stream);
    case DType::BFloat16: return launch_to<__nv_bfloat16>(src, dst, indexer, stream);
    default: return launch_to<__half>(src, dst, indexer, stream);
  }
}

}  // namespace fastdit::cuda
