// FP8 e4m3 kernels of the FP8 linear (cuda_ops.h):
//  - quantize_fp8_rows: the rule of ops/fp8.h bit for bit. One block of 256 threads per
//    row: pass 1 reduces amax (fmaxf drops NaN like std::fmax), pass 2 divides by the
//    row's scale (IEEE division, __fdiv_rn) and converts with cvt.rn.satfinite.e4m3 —
//    the rounding and saturation float_to_f8e4m3_bits does on the CPU. Rows of whole
//    16-byte runs of x move 8 elements per load (the second pass reads the row back from
//    L2 / L1: at most 13,824 x 2 bytes in Wan).
//  - scale_fp8_product: the epilogue of an unscaled FP8 GEMM (the fallback where this
//    cuBLASLt has no outer-vector scaling): y = gelu?(y · x_scales[i] · w_scales[j] + bias[j]),
//    one grid-stride pass over y.
#include <cuda_fp8.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/fp8.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

constexpr int kQuantizeThreads = 256;

__device__ __forceinline__ uint8_t e4m3_of(float v, float scale) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(__fdiv_rn(v, scale), __NV_SATFINITE, __NV_E4M3));
}

template <class T, bool kVector>
__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_rows_kernel(const T* __restrict__ x, uint8_t* __restrict__ codes, float* __restrict__ scales,
                         int64_t cols) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * cols;
  uint8_t* qr = codes + row * cols;
  constexpr int E = kRun<T>;
  float amax = 0.0f;
  if constexpr (kVector) {
    for (int64_t c = static_cast<int64_t>(threadIdx.x) * E; c < cols; c += kQuantizeThreads * E) {
      float v[E];
      load_run<E>(xr + c, v);
#pragma unroll
      for (int e = 0; e < E; ++e) amax = fmaxf(amax, fabsf(v[e]));
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += kQuantizeThreads) amax = fmaxf(amax, fabsf(to_float(xr[c])));
  }
  amax = block_max(amax, scratch);
  float scale = __fdiv_rn(amax, 448.0f);
  if (scale == 0.0f) scale = 1.0f;
  if (threadIdx.x == 0) scales[row] = scale;
  if constexpr (kVector) {
    for (int64_t c = static_cast<int64_t>(threadIdx.x) * E; c < cols; c += kQuantizeThreads * E) {
      float v[E];
      load_run<E>(xr + c, v);
      struct alignas(E) Codes {
        uint8_t values[E];
      } out;
#pragma unroll
      for (int e = 0; e < E; ++e) out.values[e] = e4m3_of(v[e], scale);
      *reinterpret_cast<Codes*>(qr + c) = out;
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += kQuantizeThreads) qr[c] = e4m3_of(to_float(xr[c]), scale);
  }
}

template <class T>
void launch_quantize(const Tensor& x, Tensor& values, Tensor& scales, int64_t rows, int64_t cols) {
  const auto* src = static_cast<const T*>(x.data_ptr());
  auto* dst = static_cast<uint8_t*>(values.data_ptr());
  auto* out_scales = static_cast<float*>(scales.data_ptr());
  const cudaStream_t stream = current_stream(x.device().index);
  const bool vector = cols % kRun<T> == 0 && aligned16(src) && reinterpret_cast<uintptr_t>(dst) % kRun<T> == 0;
  const auto blocks = static_cast<unsigned>(rows);
  if (vector) {
    quantize_rows_kernel<T, true><<<blocks, kQuantizeThreads, 0, stream>>>(src, dst, out_scales, cols);
  } else {
    quantize_rows_kernel<T, false><<<blocks, kQuantizeThreads, 0, stream>>>(src, dst, out_scales, cols);
  }
  FASTDIT_CUDA_CHECK(cudaGetLastError());
}

__global__ void scale_product_kernel(__nv_bfloat16* __restrict__ y, const float* __restrict__ x_scales,
                                     const float* __restrict__ w_scales, const void* __restrict__ bias,
                                     FloatCode bias_code, bool gelu_tanh, int64_t m, int64_t n) {
  for (int64_t i = global_thread_index(); i < m * n; i += global_thread_count()) {
    const int64_t row = i / n, col = i % n;
    float v = __bfloat162float(y[i]) * x_scales[row] * w_scales[col];
    if (bias) v += load_float(bias, bias_code, col);
    if (gelu_tanh) v = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    y[i] = __float2bfloat16_rn(v);
  }
}

}  // namespace

void quantize_fp8_rows(const Tensor& x, Tensor& values, Tensor& scales) {
  const int64_t cols = x.size(-1), rows = scales.numel();  // a row of no columns gets scale 1
  if (rows == 0) return;
  FASTDIT_CHECK(rows <= int64_t{0x7fffffff}, "quantize_fp8_rows: ", rows, " rows exceed one grid");
  DeviceGuard guard(x.device().index);
  switch (float_code(x.dtype())) {
    case FloatCode::F32: return launch_quantize<float>(x, values, scales, rows, cols);
    case FloatCode::BF16: return launch_quantize<__nv_bfloat16>(x, values, scales, rows, cols);
    case FloatCode::F16: return launch_quantize<__half>(x, values, scales, rows, cols);
  }
}

void scale_fp8_product(Tensor& y, const Tensor& x_scales, const Tensor& weight_scales, const Tensor& bias,
                       bool gelu_tanh) {
  const int64_t n = y.size(-1), m = n == 0 ? 0 : y.numel() / n;
  if (m == 0) return;
  FASTDIT_CHECK(y.dtype() == DType::BFloat16, "scale_fp8_product: y must be bfloat16, not ", dtype_name(y.dtype()));
  DeviceGuard guard(y.device().index);
  scale_product_kernel<<<grid_for(m * n), kThreadsPerBlock, 0, current_stream(y.device().index)>>>(
      static_cast<__nv_bfloat16*>(y.data_ptr()), static_cast<const float*>(x_scales.data_ptr()),
      static_cast<const float*>(weight_scales.data_ptr()), bias.defined() ? bias.data_ptr() : nullptr,
      bias.defined() ? float_code(bias.dtype()) : FloatCode::F32, gelu_tanh, m, n);
  FASTDIT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fastdit::cuda
