// Attention, flash-style on the CPU: for each (batch, head, block of kQueryBlock
// queries) the keys are visited in blocks of kKeyBlock while each query row keeps a
// running max, a running sum of exp(score - max) and an unnormalised output row, so
// the [Sq, Sk] score matrix never exists. A key block (kKeyBlock × D floats) stays
// in cache while every query row of the block uses it. Rows whose keys are all
// masked out produce zeros. A NaN score makes its row NaN, as softmax does in PyTorch
// (a NaN is never taken for a masked key). With grouped K/V heads, query head h reads kv head h / (H / Hkv)
// in place.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "backends/cpu/broadcast.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/float32_io.h"

namespace fastdit::cpu {
namespace {

constexpr int64_t kQueryBlock = 16;
constexpr int64_t kKeyBlock = 64;
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// The mask as float32 to add to the scores (a Bool mask becomes 0 / -inf), with
// strides over [B, H, Sq, Sk]. No mask reads as zeros.
class AdditiveMask {
 public:
  AdditiveMask(const Tensor& mask, const Shape& scores_shape) {
    if (!mask.defined()) return;
    values_ = as_float32(mask);
    if (mask.dtype() == DType::Bool) {
      float* v = values_.data<float>();
      for (int64_t i = 0; i < values_.numel(); ++i) v[i] = v[i] != 0.0f ? 0.0f : kMinusInf;
    }
    const Shape strides = broadcast_strides(values_.shape(), scores_shape);
    std::copy(strides.begin(), strides.end(), strides_.begin());
  }

  // The mask of query row (b, h, i) over keys; read it at [j * key_stride()].
  const float* row(int64_t b, int64_t h, int64_t i) const {
    if (!values_.defined()) return nullptr;
    return values_.data<float>() + b * strides_[0] + h * strides_[1] + i * strides_[2];
  }
  int64_t key_stride() const { return strides_[3]; }

 private:
  Tensor values_;
  std::array<int64_t, 4> strides_{};
};

struct AttentionShape {
  int64_t batch, heads, kv_heads, q_len, kv_len, head_dim, value_dim;
  int64_t kv_head(int64_t h) const { return h / (heads / kv_heads); }
};

float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// The larger of a and b, NaN when either is (std::max keeps its first argument then).
float max_or_nan(float a, float b) { return std::isnan(a) || std::isnan(b) ? std::numeric_limits<float>::quiet_NaN() : std::max(a, b); }

// One query row's running state folded over one key block.
struct RunningRow {
  float max = kMinusInf;
  float sum = 0.0f;
  float* acc;  // value_dim unnormalised outputs

  void fold(const float* scores, int64_t n, const float* v, int64_t v_row_stride, int64_t value_dim) {
    float block_max = kMinusInf;
    for (int64_t j = 0; j < n; ++j) block_max = max_or_nan(block_max, scores[j]);
    const float new_max = max_or_nan(max, block_max);
    if (new_max == kMinusInf) return;  // every key so far is masked out
    const float correction = std::exp(max - new_max);
    sum *= correction;
    for (int64_t c = 0; c < value_dim; ++c) acc[c] *= correction;
    for (int64_t j = 0; j < n; ++j) {
      const float p = std::exp(scores[j] - new_max);
      sum += p;
      const float* vj = v + j * v_row_stride;
      for (int64_t c = 0; c < value_dim; ++c) acc[c] += p * vj[c];
    }
    max = new_max;
  }
};

void attend_query_block(const float* q, const float* k, const float* v, const AdditiveMask& mask,
                        float scale, const AttentionShape& s, int64_t b, int64_t h, int64_t i0,
                        float* out) {
  const int64_t rows = std::min(kQueryBlock, s.q_len - i0);
  const int64_t k_row_stride = s.kv_heads * s.head_dim, v_row_stride = s.kv_heads * s.value_dim;
  std::vector<float> acc(rows * s.value_dim, 0.0f);
  std::vector<RunningRow> running(rows);
  for (int64_t r = 0; r < rows; ++r) running[r].acc = acc.data() + r * s.value_dim;
  std::array<float, kKeyBlock> scores;
  for (int64_t j0 = 0; j0 < s.kv_len; j0 += kKeyBlock) {
    const int64_t n = std::min(kKeyBlock, s.kv_len - j0);
    const float* k_block = k + ((b * s.kv_len + j0) * s.kv_heads + s.kv_head(h)) * s.head_dim;
    const float* v_block = v + ((b * s.kv_len + j0) * s.kv_heads + s.kv_head(h)) * s.value_dim;
    for (int64_t r = 0; r < rows; ++r) {
      const float* qi = q + ((b * s.q_len + i0 + r) * s.heads + h) * s.head_dim;
      const float* mask_row = mask.row(b, h, i0 + r);
      for (int64_t j = 0; j < n; ++j) {
        scores[j] = dot(qi, k_block + j * k_row_stride, s.head_dim) * scale;
        if (mask_row) scores[j] += mask_row[(j0 + j) * mask.key_stride()];
      }
      running[r].fold(scores.data(), n, v_block, v_row_stride, s.value_dim);
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out + ((b * s.q_len + i0 + r) * s.heads + h) * s.value_dim;
    const float sum = running[r].sum;
    const float inv_sum = std::isnan(sum) ? sum : sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int64_t c = 0; c < s.value_dim; ++c) o[c] = running[r].acc[c] * inv_sum;
  }
}

}  // namespace

void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, float scale,
               Tensor& out) {
  const AttentionShape s{q.size(0), q.size(2), k.size(2), q.size(1), k.size(1), q.size(3), v.size(3)};
  const AdditiveMask additive_mask(mask, {s.batch, s.heads, s.q_len, s.kv_len});
  const Tensor q32 = as_float32(q), k32 = as_float32(k), v32 = as_float32(v);
  Float32Output y(out);
  const int64_t query_blocks = (s.q_len + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel for collapse(3) schedule(dynamic)
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      for (int64_t block = 0; block < query_blocks; ++block) {
        attend_query_block(q32.data<float>(), k32.data<float>(), v32.data<float>(), additive_mask,
                           scale, s, b, h, block * kQueryBlock, y.data());
      }
    }
  }
  y.store();
}

}  // namespace fastdit::cpu
