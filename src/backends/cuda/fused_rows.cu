// Row kernels for the DiT block's memory-bound glue, one CTA (256 threads) per token row:
//  - qkv_norm_rope: reads one row of a fused q|k|v projection [3·D] once per pass,
//    RMS-normalises q and k across all heads (float32 statistics), rounds them to the
//    storage dtype like the reference's separate norm modules, rotates the pairs in
//    float32 and writes q, k, v as contiguous [H, dh] rows; the three strided copies, two
//    norms and two rotations of the unfused path become one pass.
//  - gated residual add with a per-batch or per-token gate row, any input dtypes: the
//    broadcast the generic strided walker handles with index arithmetic per element.
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

constexpr int kRowThreads = 256;

struct QkvParams {
  const void* qkv;
  void *q, *k, *v;
  const void *norm_q, *norm_k;
  FloatCode norm_code;
  const float *cos, *sin;  // [S, dh]
  int64_t dim, head_dim, seq;
  float eps;
  bool interleaved;
};

// Normalises and rotates one of q (part 0) or k (part 1) of the row.
template <class T>
__device__ void norm_rope_part(const QkvParams& p, const T* in, T* out, const void* weight, int64_t s,
                               float* scratch) {
  float squares = 0.0f;
  for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) {
    const float v = to_float(in[j]);
    squares += v * v;
  }
  const float inv_rms = 1.0f / sqrtf(block_sum(squares, scratch) / static_cast<float>(p.dim) + p.eps);
  const int64_t half = p.head_dim / 2;
  const float* cos = p.cos + s * p.head_dim;
  const float* sin = p.sin + s * p.head_dim;
  for (int64_t pair = threadIdx.x; pair < p.dim / 2; pair += blockDim.x) {
    const int64_t head = pair / half, i = pair % half;
    const int64_t a = p.interleaved ? 2 * i : i, a2 = p.interleaved ? a + 1 : a + half;
    const int64_t ja = head * p.head_dim + a, ja2 = head * p.head_dim + a2;
    // Rounded to T first: the reference normalises in one module and rotates in another.
    const float x1 = to_float(from_float<T>(to_float(in[ja]) * inv_rms * load_float(weight, p.norm_code, ja)));
    const float x2 = to_float(from_float<T>(to_float(in[ja2]) * inv_rms * load_float(weight, p.norm_code, ja2)));
    out[ja] = from_float<T>(x1 * cos[a] - x2 * sin[a]);
    out[ja2] = from_float<T>(x2 * cos[a2] + x1 * sin[a2]);
  }
}

template <class T>
__global__ void qkv_norm_rope_rows(QkvParams p) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, s = row % p.seq;
  const T* in = static_cast<const T*>(p.qkv) + row * 3 * p.dim;
  norm_rope_part(p, in, static_cast<T*>(p.q) + row * p.dim, p.norm_q, s, scratch);
  norm_rope_part(p, in + p.dim, static_cast<T*>(p.k) + row * p.dim, p.norm_k, s, scratch);
  T* v = static_cast<T*>(p.v) + row * p.dim;
  for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) v[j] = in[2 * p.dim + j];
}

struct GatedRowParams {
  const void *residual, *x, *gate;
  void* out;
  FloatCode residual_code, x_code, gate_code, out_code;
  int64_t dim, seq;
  bool gate_per_token;
};

__global__ void gated_add_rows(GatedRowParams p) {
  const int64_t row = blockIdx.x;
  const int64_t gate_row = (p.gate_per_token ? row : row / p.seq) * p.dim;
  for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) {
    const int64_t i = row * p.dim + j;
    const float value = load_float(p.residual, p.residual_code, i) +
                        load_float(p.x, p.x_code, i) * load_float(p.gate, p.gate_code, gate_row + j);
    store_float(p.out, p.out_code, i, value);
  }
}

}  // namespace

void qkv_norm_rope(const Tensor& qkv, const Tensor& norm_q, const Tensor& norm_k, float eps, const Tensor& cos,
                   const Tensor& sin, ops::RopeStyle style, Tensor& q, Tensor& k, Tensor& v) {
  const int64_t rows = qkv.numel() / qkv.size(-1);
  if (rows == 0) return;
  QkvParams p{};
  p.qkv = qkv.data_ptr();
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.norm_q = norm_q.data_ptr();
  p.norm_k = norm_k.data_ptr();
  FASTDIT_CHECK(norm_q.dtype() == norm_k.dtype() && cos.dtype() == DType::Float32 && sin.dtype() == DType::Float32,
                "qkv_norm_rope: norm weights of one dtype and float32 cos/sin expected");
  p.norm_code = float_code(norm_q.dtype());
  p.cos = static_cast<const float*>(cos.data_ptr());
  p.sin = static_cast<const float*>(sin.data_ptr());
  p.dim = q.size(2) * q.size(3);
  p.head_dim = q.size(3);
  p.seq = q.size(1);
  p.eps = eps;
  p.interleaved = style == ops::RopeStyle::Interleaved;
  DeviceGuard guard(qkv.device().index);
  const cudaStream_t stream = current_stream(qkv.device().index);
  switch (float_code(qkv.dtype())) {
    case FloatCode::F32: qkv_norm_rope_rows<float><<<rows, kRowThreads, 0, stream>>>(p); break;
    case FloatCode::BF16: qkv_norm_rope_rows<__nv_bfloat16><<<rows, kRowThreads, 0, stream>>>(p); break;
    case FloatCode::F16: qkv_norm_rope_rows<__half><<<rows, kRowThreads, 0, stream>>>(p); break;
  }
  FASTDIT_CUDA_CHECK_LAUNCH();
}

bool gated_add_by_rows(const Tensor& residual, const Tensor& x, const Tensor& gate, Tensor& out) {
  // residual, x and out [B, L, D] contiguous; gate [B, 1, D] or [B, L, D].
  if (out.dim() != 3 || residual.shape() != out.shape() || x.shape() != out.shape() || gate.dim() != 3 ||
      gate.size(0) != out.size(0) || gate.size(2) != out.size(2) ||
      (gate.size(1) != 1 && gate.size(1) != out.size(1)))
    return false;
  const int64_t rows = out.size(0) * out.size(1);
  if (rows == 0) return true;
  GatedRowParams p{residual.data_ptr(), x.data_ptr(), gate.data_ptr(), out.data_ptr(),
                   float_code(residual.dtype()), float_code(x.dtype()), float_code(gate.dtype()),
                   float_code(out.dtype()), out.size(2), out.size(1), gate.size(1) != 1};
  DeviceGuard guard(out.device().index);
  gated_add_rows<<<rows, kRowThreads, 0, current_stream(out.device().index)>>>(p);
  FASTDIT_CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace fastdit::cuda
