// softmax over one dim of a tensor seen as [outer, n, inner]:
//  - inner == 1 (the last dim, the common case): one CTA per row, block reductions for
//    the max and the sum of exponentials, three passes over the row (L1/L2 resident).
//  - inner > 1: one thread per (outer, inner) column walking n elements spaced inner
//    apart; neighbouring threads read neighbouring columns, so loads stay coalesced.
#include <cstdint>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

template <class T>
__global__ void softmax_rows(const T* x, T* out, int64_t n) {
  __shared__ float scratch[32];
  const T* xr = x + blockIdx.x * n;
  T* yr = out + blockIdx.x * n;
  float max = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) max = fmaxf(max, to_float(xr[j]));
  max = block_max(max, scratch);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += expf(to_float(xr[j]) - max);
  const float inv_sum = 1.0f / block_sum(sum, scratch);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    yr[j] = from_float<T>(expf(to_float(xr[j]) - max) * inv_sum);
  }
}

template <class T>
__global__ void softmax_columns(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  for (int64_t c = global_thread_index(); c < outer * inner; c += global_thread_count()) {
    const int64_t base = c / inner * n * inner + c % inner;
    float max = -INFINITY;
    for (int64_t j = 0; j < n; ++j) max = fmaxf(max, to_float(x[base + j * inner]));
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) sum += expf(to_float(x[base + j * inner]) - max);
    const float inv_sum = 1.0f / sum;
    for (int64_t j = 0; j < n; ++j) {
      out[base + j * inner] = from_float<T>(expf(to_float(x[base + j * inner]) - max) * inv_sum);
    }
  }
}

template <class T>
void launch(const Tensor& x, Tensor& out, int64_t outer, int64_t n, int64_t inner,
            cudaStream_t stream) {
  const auto* in = static_cast<const T*>(x.data_ptr());
  auto* y = static_cast<T*>(out.data_ptr());
  if (inner == 1) {
    softmax_rows<T><<<outer, threads_for_row(n), 0, stream>>>(in, y, n);
  } else {
    softmax_columns<T>
        <<<grid_for(outer * inner), kThreadsPerBlock, 0, stream>>>(in, y, outer, n, inner);
  }
  FASTDIT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void softmax(const Tensor& x, int64_t dim, Tensor& out) {
  if (x.numel() == 0) return;
  const int64_t n = x.size(dim);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  DeviceGuard guard(x.device());
  const cudaStream_t stream = current_stream(x.device().index);
  switch (x.dtype()) {
    case DType::Float32: return launch<float>(x, out, outer, n, inner, stream);
    case DType::BFloat16: return launch<__nv_bfloat16>(x, out, outer, n, inner, stream);
    default: return launch<__half>(x, out, outer, n, inner, stream);
  }
}

}  // namespace fastdit::cuda
