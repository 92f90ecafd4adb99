// Rotary embedding on x [B, S, H, D] with float32 math: one thread per two elements
// (grid-stride). The first R = cos.size(-1) dims are rotated: both styles rotate R/2 pairs
// (x[a], x[a + partner]) by
//   out[a] = x[a]·cos[a] − x[a + partner]·sin[a]
//   out[a + partner] = x[a + partner]·cos[a + partner] + x[a]·sin[a + partner]
// and differ only in where pair p starts (2p or p) and how far its partner is (1 or R/2).
// Threads past the R/2 pairs of a row copy two of its remaining D − R dims.
// Rows [S, R] shared by every batch item and head stay in cache; per-head or per-item rows
// ([S, H, R], [B, S, H, R]) are read at their ops::RopeTableLayout strides.
#include <cstdint>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

struct RopeParams {
  const void* cos;
  const void* sin;
  FloatCode cos_code, sin_code;
  int64_t seq, heads, head_dim, rotary_dim;
  int64_t table_batch, table_seq, table_head;  // ops::RopeTableLayout strides
  int64_t pair_start_step, partner;
};

template <class T>
__global__ void rope_pairs(const T* x, T* out, RopeParams p, int64_t pairs) {
  const int64_t half = p.head_dim / 2;
  for (int64_t i = global_thread_index(); i < pairs; i += global_thread_count()) {
    const int64_t row = i / half, pair = i % half;  // row = (b·S + s)·H + h
    if (2 * pair >= p.rotary_dim) {
      const int64_t column = 2 * pair;  // R + 2·(pair − R/2)
      out[row * p.head_dim + column] = x[row * p.head_dim + column];
      out[row * p.head_dim + column + 1] = x[row * p.head_dim + column + 1];
      continue;
    }
    const int64_t h = row % p.heads, s = row / p.heads % p.seq, b = row / p.heads / p.seq;
    const int64_t a = pair * p.pair_start_step, a2 = a + p.partner;
    const int64_t table = b * p.table_batch + s * p.table_seq + h * p.table_head;
    const float x1 = to_float(x[row * p.head_dim + a]), x2 = to_float(x[row * p.head_dim + a2]);
    const float cos1 = load_float(p.cos, p.cos_code, table + a);
    const float cos2 = load_float(p.cos, p.cos_code, table + a2);
    const float sin1 = load_float(p.sin, p.sin_code, table + a);
    const float sin2 = load_float(p.sin, p.sin_code, table + a2);
    out[row * p.head_dim + a] = from_float<T>(x1 * cos1 - x2 * sin1);
    out[row * p.head_dim + a2] = from_float<T>(x2 * cos2 + x1 * sin2);
  }
}

template <class T>
void launch(const Tensor& x, Tensor& out, const RopeParams& p, cudaStream_t stream) {
  const int64_t pairs = x.numel() / 2;
  rope_pairs<T><<<grid_for(pairs), kThreadsPerBlock, 0, stream>>>(
      static_cast<const T*>(x.data_ptr()), static_cast<T*>(out.data_ptr()), p, pairs);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeStyle style,
          Tensor& out) {
  if (x.numel() == 0) return;
  const bool interleaved = style == ops::RopeStyle::Interleaved;
  RopeParams p{};
  p.cos = cos.data_ptr();
  p.sin = sin.data_ptr();
  p.cos_code = float_code(cos.dtype());
  p.sin_code = float_code(sin.dtype());
  p.seq = x.size(1);
  p.heads = x.size(2);
  p.head_dim = x.size(3);
  const ops::RopeTableLayout table = ops::rope_table_layout(cos);
  p.rotary_dim = table.rotary;
  p.table_batch = table.batch;
  p.table_seq = table.seq;
  p.table_head = table.head;
  p.pair_start_step = interleaved ? 2 : 1;
  p.partner = interleaved ? 1 : p.rotary_dim / 2;
  DeviceGuard guard(x.device());
  const cudaStream_t stream = current_stream(x.device().index);
  switch (x.dtype()) {
    case DType::Float32: return launch<float>(x, out, p, stream);
    case DType::BFloat16: return launch<__nv_bfloat16>(x, out, p, stream);
    default: return launch<__half>(x, out, p, stream);
  }
}

}  // namespace fastdit::cuda
