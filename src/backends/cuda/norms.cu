// layer_norm, rms_norm and layer_norm_modulate: one kernel, one CTA per row (32 to 512
// threads, about one per 4 elements). The row is read three times from global memory —
// sum for the mean, sum of squared deviations, then the normalised write — and after
// the first pass it sits in L1/L2, so DRAM sees it about once. Statistics are float32
// block reductions; the per-column affine (weight, bias) and the per-row modulation
// (x̂ · (1 + scale) + shift) are optional and may have any float dtype.
#include <cstdint>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

// A [B, L, D] or [B, 1, D] per-row operand: row r = b·L + l starts at
// b·batch_stride + l·seq_stride.
struct RowOperand {
  const void* data = nullptr;
  FloatCode code = FloatCode::F32;
  int64_t batch_stride = 0, seq_stride = 0;

  __device__ int64_t row_offset(int64_t row, int64_t seq) const {
    return row / seq * batch_stride + row % seq * seq_stride;
  }
};

struct NormalizeParams {
  const void* x;
  void* out;
  int64_t length;  // D
  float eps;
  bool subtract_mean;
  const void* weight;  // [D] or null
  const void* bias;    // [D] or null
  FloatCode weight_code, bias_code;
  RowOperand shift, scale;  // null data: no modulation
  int64_t seq;              // L, for the modulation rows
};

template <class T>
__global__ void normalize_rows(NormalizeParams p) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + row * p.length;
  T* out = static_cast<T*>(p.out) + row * p.length;
  float mean = 0.0f;
  if (p.subtract_mean) {
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < p.length; j += blockDim.x) sum += to_float(x[j]);
    mean = block_sum(sum, scratch) / static_cast<float>(p.length);
  }
  float squares = 0.0f;
  for (int64_t j = threadIdx.x; j < p.length; j += blockDim.x) {
    const float centered = to_float(x[j]) - mean;
    squares += centered * centered;
  }
  const float variance = block_sum(squares, scratch) / static_cast<float>(p.length);
  const float inv_std = 1.0f / sqrtf(variance + p.eps);
  const int64_t shift_row = p.shift.data ? p.shift.row_offset(row, p.seq) : 0;
  const int64_t scale_row = p.scale.data ? p.scale.row_offset(row, p.seq) : 0;
  for (int64_t j = threadIdx.x; j < p.length; j += blockDim.x) {
    float v = (to_float(x[j]) - mean) * inv_std;
    if (p.weight) v *= load_float(p.weight, p.weight_code, j);
    if (p.bias) v += load_float(p.bias, p.bias_code, j);
    if (p.scale.data) v *= 1.0f + load_float(p.scale.data, p.scale.code, scale_row + j);
    if (p.shift.data) v += load_float(p.shift.data, p.shift.code, shift_row + j);
    out[j] = from_float<T>(v);
  }
}

NormalizeParams params_for(const Tensor& x, Tensor& out, float eps, bool subtract_mean) {
  NormalizeParams p{};
  p.x = x.data_ptr();
  p.out = out.data_ptr();
  p.length = x.size(-1);
  p.eps = eps;
  p.subtract_mean = subtract_mean;
  p.seq = 1;
  return p;
}

void set_affine(NormalizeParams& p, const Tensor& weight, const Tensor& bias) {
  if (weight.defined()) {
    p.weight = weight.data_ptr();
    p.weight_code = float_code(weight.dtype());
  }
  if (bias.defined()) {
    p.bias = bias.data_ptr();
    p.bias_code = float_code(bias.dtype());
  }
}

void launch(const NormalizeParams& p, const Tensor& x, DType dtype) {
  const int64_t rows = p.length == 0 ? 0 : x.numel() / p.length;
  if (rows == 0) return;
  DeviceGuard guard(x.device());
  const cudaStream_t stream = current_stream(x.device().index);
  const int threads = threads_for_row(p.length);
  switch (dtype) {
    case DType::Float32: normalize_rows<float><<<rows, threads, 0, stream>>>(p); break;
    case DType::BFloat16: normalize_rows<__nv_bfloat16><<<rows, threads, 0, stream>>>(p); break;
    default: normalize_rows<__half><<<rows, threads, 0, stream>>>(p); break;
  }
  FASTDIT_CUDA_CHECK_LAUNCH();
}

// shift / scale of shape [B, 1, D] or [B, L, D] against x [B, L, D].
RowOperand row_operand(const char* name, const Tensor& t, const Tensor& x) {
  const int64_t batch = x.size(0), seq = x.size(1), d = x.size(2);
  FASTDIT_CHECK(t.dim() == 3 && t.size(0) == batch && (t.size(1) == 1 || t.size(1) == seq) &&
                    t.size(2) == d && t.is_contiguous(),
                "layer_norm_modulate: ", name, " ", shape_str(t.shape()), " must be [", batch,
                ", 1, ", d, "] or [", batch, ", ", seq, ", ", d, "] and contiguous");
  return {t.data_ptr(), float_code(t.dtype()), t.size(1) * d, t.size(1) == 1 ? 0 : d};
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
  NormalizeParams p = params_for(x, out, eps, /*subtract_mean=*/true);
  set_affine(p, weight, bias);
  launch(p, x, x.dtype());
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  NormalizeParams p = params_for(x, out, eps, /*subtract_mean=*/false);
  set_affine(p, weight, Tensor{});
  launch(p, x, x.dtype());
}

void layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                         Tensor& out) {
  FASTDIT_CHECK(x.dim() == 3 && x.is_contiguous(), "layer_norm_modulate: x ", shape_str(x.shape()),
                " must be a contiguous [B, L, D]");
  FASTDIT_CHECK(out.shape() == x.shape() && out.dtype() == x.dtype() && out.is_contiguous(),
                "layer_norm_modulate: out ", out.str(), " must be a contiguous ", x.str());
  NormalizeParams p = params_for(x, out, eps, /*subtract_mean=*/true);
  p.shift = row_operand("shift", shift, x);
  p.scale = row_operand("scale", scale, x);
  p.seq = x.size(1);
  launch(p, x, x.dtype());
}

}  // namespace fastdit::cuda
