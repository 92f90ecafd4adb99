// The reference attention kernel: simple, any float dtype, any head dims, masks. It is
// the backend for float32 and for masked calls, and the plain oracle the fast backends
// are checked against on the GPU.
//
// One CTA of 128 threads per query row (b, h, i); grid (Sq, H, B). The query row (fp32)
// and the unnormalised output row live in shared memory. Keys go by in chunks of 128:
//   thread j scores key j of the chunk (a D-long dot product) plus the mask
//   → block max → running max, correction exp(old − new), p_j = exp(s_j − new)
//   → block sum into the running sum → thread c updates output columns c, c + 128, …
//     with Σ_j p_j · v[j][c] (neighbouring threads read neighbouring columns).
// Query head h reads K/V head h / (H / Hkv). Rows whose keys are all masked out give
// zeros, as on the CPU. float32 math throughout,
// expf (not the fast intrinsic), so float32 results match the CPU to about 1e-6.
#include <cstdint>

#include "backends/cuda/attention.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

constexpr int kChunk = 128;  // keys per step = threads per CTA

struct MaskOperand {
  const void* data = nullptr;  // null: no mask
  bool is_bool = false;
  FloatCode code = FloatCode::F32;
  int64_t strides[4] = {};  // over [B, H, Sq, Sk]; 0 along broadcast dims

  __device__ float additive(int64_t b, int64_t h, int64_t i, int64_t j) const {
    const int64_t offset = b * strides[0] + h * strides[1] + i * strides[2] + j * strides[3];
    if (is_bool) return static_cast<const uint8_t*>(data)[offset] ? 0.0f : -INFINITY;
    return load_float(data, code, offset);
  }
};

struct ReferenceParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  FloatCode code;
  int64_t q_len, kv_len, heads, kv_heads, head_dim, value_dim;
  float scale;
  MaskOperand mask;
};

__global__ void __launch_bounds__(kChunk) reference_attention_rows(ReferenceParams p) {
  extern __shared__ float shared[];
  float* query = shared;                     // [head_dim]
  float* acc = query + p.head_dim;           // [value_dim]
  float* probabilities = acc + p.value_dim;  // [kChunk]
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t kv_h = h / (p.heads / p.kv_heads);  // grouped K/V heads
  const int64_t q_row = ((b * p.q_len + i) * p.heads + h) * p.head_dim;
  for (int64_t c = threadIdx.x; c < p.head_dim; c += blockDim.x)
    query[c] = load_float(p.q, p.code, q_row + c);
  for (int64_t c = threadIdx.x; c < p.value_dim; c += blockDim.x) acc[c] = 0.0f;
  __syncthreads();

  float running_max = -INFINITY, running_sum = 0.0f;
  for (int64_t first = 0; first < p.kv_len; first += kChunk) {
    const int64_t j = first + threadIdx.x;
    float score = -INFINITY;
    if (j < p.kv_len) {
      const int64_t k_row = ((b * p.kv_len + j) * p.kv_heads + kv_h) * p.head_dim;
      float dot = 0.0f;
      for (int64_t c = 0; c < p.head_dim; ++c) dot += query[c] * load_float(p.k, p.code, k_row + c);
      score = dot * p.scale;
      if (p.mask.data) score += p.mask.additive(b, h, i, j);
    }
    // A NaN score counts as +inf for the max (fmaxf would drop it and could take the chunk for
    // a masked one), so it reaches the sum and its row comes out NaN, as softmax's does.
    const float new_max = fmaxf(running_max, block_max(isnan(score) ? INFINITY : score, scratch));
    if (new_max == -INFINITY) continue;  // every key so far is masked out
    const float correction = expf(running_max - new_max);
    const float probability = score == -INFINITY ? 0.0f : expf(score - new_max);
    probabilities[threadIdx.x] = probability;
    running_sum = running_sum * correction + block_sum(probability, scratch);
    running_max = new_max;
    const int64_t keys = min(static_cast<int64_t>(kChunk), p.kv_len - first);
    for (int64_t c = threadIdx.x; c < p.value_dim; c += blockDim.x) {
      float sum = acc[c] * correction;
      for (int64_t jj = 0; jj < keys; ++jj) {
        const int64_t v_row = ((b * p.kv_len + first + jj) * p.kv_heads + kv_h) * p.value_dim;
        sum += probabilities[jj] * load_float(p.v, p.code, v_row + c);
      }
      acc[c] = sum;
    }
    __syncthreads();  // probabilities are rewritten by the next chunk
  }
  const float inv_sum = isnan(running_sum) ? running_sum : running_sum > 0.0f ? 1.0f / running_sum : 0.0f;
  const int64_t out_row = ((b * p.q_len + i) * p.heads + h) * p.value_dim;
  for (int64_t c = threadIdx.x; c < p.value_dim; c += blockDim.x) {
    store_float(p.out, p.code, out_row + c, acc[c] * inv_sum);
  }
}

MaskOperand mask_operand(const Tensor& mask, const Tensor& q, const Tensor& k) {
  MaskOperand operand;
  if (!mask.defined()) return operand;
  operand.data = mask.data_ptr();
  operand.is_bool = mask.dtype() == DType::Bool;
  if (!operand.is_bool) operand.code = float_code(mask.dtype());
  const Shape strides = broadcast_strides(mask, {q.size(0), q.size(2), q.size(1), k.size(1)});
  std::copy(strides.begin(), strides.end(), operand.strides);
  return operand;
}

}  // namespace

void reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                         float scale, Tensor& out) {
  FASTDIT_CHECK(q.size(1) <= 2147483647 && q.size(2) <= 65535 && q.size(0) <= 65535,
                "reference attention: grid too large for q ", shape_str(q.shape()));
  const ReferenceParams p{q.data_ptr(),
                          k.data_ptr(),
                          v.data_ptr(),
                          out.data_ptr(),
                          float_code(q.dtype()),
                          q.size(1),
                          k.size(1),
                          q.size(2),
                          k.size(2),
                          q.size(3),
                          v.size(3),
                          scale,
                          mask_operand(mask, q, k)};
  const size_t shared = static_cast<size_t>(p.head_dim + p.value_dim + kChunk) * sizeof(float);
  DeviceGuard guard(out.device());
  FASTDIT_CUDA_CHECK(cudaFuncSetAttribute(reference_attention_rows,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(shared)));
  const dim3 grid(static_cast<unsigned>(q.size(1)), static_cast<unsigned>(q.size(2)),
                  static_cast<unsigned>(q.size(0)));
  reference_attention_rows<<<grid, kChunk, shared, current_stream(out.device().index)>>>(p);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

}  // namespace fastdit::cuda
