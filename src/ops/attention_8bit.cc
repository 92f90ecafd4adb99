#include "ops/attention_8bit.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/fp8.h"

namespace fastdit::attention8 {
namespace {

size_t index4(int64_t b, int64_t s, int64_t h, int64_t c, int64_t seq, int64_t heads, int64_t dim) {
  return static_cast<size_t>(((b * seq + s) * heads + h) * dim + c);
}

// One tensor's per-(head, block of rows) INT8 quantization of x̂ = (x − mean) / a (keys:
// mean and divide) or x · a (queries); mean and balance [B, kv heads, D], head h using kv
// head h / group.
void quantize_blocks(std::span<const float> x, int64_t batch, int64_t seq, int64_t heads, int64_t dim, int64_t group,
                     int64_t block, const std::vector<float>* mean, const std::vector<float>& balance,
                     std::vector<int8_t>& codes, std::vector<float>& scales) {
  const int64_t blocks = (seq + block - 1) / block;
  codes.assign(x.size(), 0);
  scales.assign(static_cast<size_t>(batch * heads * blocks), 1.0f);
  const int64_t kv_heads = heads / group;
  const auto value = [&](int64_t b, int64_t s, int64_t h, int64_t c) {
    const float v = x[index4(b, s, h, c, seq, heads, dim)];
    const size_t channel = static_cast<size_t>((b * kv_heads + h / group) * dim + c);
    return mean ? (v - (*mean)[channel]) / balance[channel] : v * balance[channel];
  };
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t first = blk * block, last = std::min(seq, first + block);
        float amax = 0.0f;
        for (int64_t s = first; s < last; ++s)
          for (int64_t c = 0; c < dim; ++c) amax = std::fmax(amax, std::fabs(value(b, s, h, c)));
        const float scale = int8_scale(amax);
        scales[static_cast<size_t>((b * heads + h) * blocks + blk)] = scale;
        for (int64_t s = first; s < last; ++s)
          for (int64_t c = 0; c < dim; ++c) codes[index4(b, s, h, c, seq, heads, dim)] = encode_int8(value(b, s, h, c), scale);
      }
    }
  }
}

}  // namespace

float int8_scale(float amax) {
  const float scale = amax / kInt8Max;
  return scale == 0.0f ? 1.0f : scale;
}

float balance_factor(float k_amax, float q_amax) {
  if (k_amax == 0.0f || q_amax == 0.0f) return 1.0f;
  return std::sqrt(k_amax / q_amax);
}

int8_t encode_int8(float value, float scale) {
  const float q = std::nearbyint(value / scale);  // the default rounding: to nearest even
  return static_cast<int8_t>(std::clamp(q, -kInt8Max, kInt8Max));
}

Operands quantize(std::span<const float> q, std::span<const float> k, std::span<const float> v, const Shape& shape) {
  const int64_t batch = shape.batch, q_len = shape.q_len, kv_len = shape.kv_len, heads = shape.heads,
                kv_heads = shape.kv_heads, dim = shape.dim;
  FASTDIT_CHECK(batch > 0 && q_len > 0 && kv_len > 0 && kv_heads > 0 && heads % kv_heads == 0 && dim > 0,
                "attention8::quantize: bad shape [", batch, ", ", q_len, "/", kv_len, ", ", heads, "/", kv_heads, ", ",
                dim, "]");
  FASTDIT_CHECK(static_cast<int64_t>(q.size()) == batch * q_len * heads * dim &&
                    static_cast<int64_t>(k.size()) == batch * kv_len * kv_heads * dim && v.size() == k.size(),
                "attention8::quantize: ", q.size(), "/", k.size(), "/", v.size(), " values do not fit the shape");
  Operands out;
  out.shape = shape;
  const int64_t group = heads / kv_heads;
  out.k_mean.assign(static_cast<size_t>(batch * kv_heads * dim), 0.0f);
  out.balance.assign(out.k_mean.size(), 1.0f);
  out.v_scales.assign(out.k_mean.size(), 1.0f);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < kv_heads; ++h) {
      for (int64_t c = 0; c < dim; ++c) {
        double sum = 0.0;
        float amax = 0.0f, k_max = -INFINITY, k_min = INFINITY, q_amax = 0.0f;
        for (int64_t s = 0; s < kv_len; ++s) {
          const size_t i = index4(b, s, h, c, kv_len, kv_heads, dim);
          sum += k[i];
          k_max = std::fmax(k_max, k[i]);
          k_min = std::fmin(k_min, k[i]);
          amax = std::fmax(amax, std::fabs(v[i]));
        }
        for (int64_t s = 0; s < q_len; ++s)
          for (int64_t g = 0; g < group; ++g)
            q_amax = std::fmax(q_amax, std::fabs(q[index4(b, s, h * group + g, c, q_len, heads, dim)]));
        const size_t at = static_cast<size_t>((b * kv_heads + h) * dim + c);
        const float mean = static_cast<float>(sum / static_cast<double>(kv_len));
        out.k_mean[at] = mean;
        out.balance[at] = balance_factor(std::fmax(k_max - mean, mean - k_min), q_amax);
        const float scale = amax / fp8::kE4M3Max;
        out.v_scales[at] = scale == 0.0f ? 1.0f : scale;
      }
    }
  }
  quantize_blocks(q, batch, q_len, heads, dim, group, kQueryBlock, nullptr, out.balance, out.q, out.q_scales);
  quantize_blocks(k, batch, kv_len, kv_heads, dim, 1, kBlock, &out.k_mean, out.balance, out.k, out.k_scales);
  out.v.resize(v.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < kv_len; ++s)
      for (int64_t h = 0; h < kv_heads; ++h)
        for (int64_t c = 0; c < dim; ++c) {
          const size_t i = index4(b, s, h, c, kv_len, kv_heads, dim);
          out.v[i] = fp8::encode_e4m3(v[i] / out.v_scales[static_cast<size_t>((b * kv_heads + h) * dim + c)]);
        }
  return out;
}

std::vector<float> attention(const Operands& o, float scale) {
  // Plain copies, not structured bindings: the OpenMP region below captures them.
  const int64_t batch = o.shape.batch, q_len = o.shape.q_len, kv_len = o.shape.kv_len, heads = o.shape.heads,
                kv_heads = o.shape.kv_heads, dim = o.shape.dim;
  const int64_t group = heads / kv_heads, qb = o.shape.q_blocks(), kb = o.shape.k_blocks();
  std::vector<float> out(static_cast<size_t>(batch * q_len * heads * dim));
#pragma omp parallel for collapse(2) if (batch * heads * q_len * kv_len * dim > (1 << 22))
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t hk = h / group;
      std::vector<double> scores(static_cast<size_t>(kv_len)), acc(static_cast<size_t>(dim));
      for (int64_t i = 0; i < q_len; ++i) {
        const double qs = o.q_scales[static_cast<size_t>((b * heads + h) * qb + i / kQueryBlock)];
        // Online over 128-key tiles, as the kernel: each tile's P against the running max.
        double row_max = -INFINITY, sum = 0.0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t first = 0; first < kv_len; first += kBlock) {
          const int64_t last = std::min(kv_len, first + kBlock);
          double tile_max = row_max;
          for (int64_t j = first; j < last; ++j) {
            int64_t dot = 0;
            for (int64_t c = 0; c < dim; ++c)
              dot += int64_t{o.q[index4(b, i, h, c, q_len, heads, dim)]} * o.k[index4(b, j, hk, c, kv_len, kv_heads, dim)];
            const double ks = o.k_scales[static_cast<size_t>((b * kv_heads + hk) * kb + j / kBlock)];
            scores[j] = static_cast<double>(dot) * qs * ks;
            tile_max = std::max(tile_max, scores[j]);
          }
          const double correction = std::exp(scale * (row_max - tile_max));  // 0 for the first tile
          row_max = tile_max;
          sum *= correction;
          for (double& a : acc) a *= correction;
          for (int64_t j = first; j < last; ++j) {
            const float p = static_cast<float>(kPGain * std::exp(scale * (scores[j] - row_max)));
            const double pq = fp8::decode_e4m3(fp8::encode_e4m3(p));
            sum += pq;
            for (int64_t c = 0; c < dim; ++c) acc[c] += pq * fp8::decode_e4m3(o.v[index4(b, j, hk, c, kv_len, kv_heads, dim)]);
          }
        }
        for (int64_t c = 0; c < dim; ++c) {
          const double vs = o.v_scales[static_cast<size_t>((b * kv_heads + hk) * dim + c)];
          out[index4(b, i, h, c, q_len, heads, dim)] = static_cast<float>(acc[c] / sum * vs);
        }
      }
    }
  }
  return out;
}

}  // namespace fastdit::attention8
