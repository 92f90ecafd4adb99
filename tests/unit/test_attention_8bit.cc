// The 8-bit attention's rule on the CPU (ops/attention_8bit.h): the quantization (scales,
// rounding, K smoothing) against a plain restatement, the emulated attention against exact
// float64 attention within the stated bounds on realistic and adversarial inputs, and the
// ops:: dispatch and the self-attention routing it feeds.
//
// Bounds (stated before measuring, derived in ops/attention_8bit.h): rel_l2 <= 0.05,
// cosine >= 0.9985, max |error| <= 0.1 · max |reference|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/half.h"
#include "nn/attention.h"
#include "ops/attention_8bit.h"
#include "ops/fp8.h"
#include "ops/ops.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

using attention8::Shape;

// Gaussian values rounded to bfloat16 (what the kernels see), with optional per-channel
// offsets and outlier channels (as real keys show).
std::vector<float> values(int64_t rows, int64_t dim, uint64_t seed, float sigma, float offset_sigma = 0.0f,
                          int outliers = 0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> offsets(static_cast<size_t>(dim));
  for (float& o : offsets) o = offset_sigma * normal(rng);
  std::vector<float> v(static_cast<size_t>(rows * dim));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < dim; ++c) {
      float x = sigma * normal(rng) + offsets[c];
      if (c < outliers) x *= 20.0f;
      v[r * dim + c] = bf16_bits_to_float(float_to_bf16_bits(x));
    }
  return v;
}

size_t at(int64_t b, int64_t s, int64_t h, int64_t c, int64_t seq, int64_t heads, int64_t dim) {
  return static_cast<size_t>(((b * seq + s) * heads + h) * dim + c);
}

// softmax(q·kᵀ · scale) · v in float64.
std::vector<float> exact_attention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const Shape& s, float scale) {
  std::vector<float> out(q.size());
  const int64_t group = s.heads / s.kv_heads;
  std::vector<double> w(static_cast<size_t>(s.kv_len));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t i = 0; i < s.q_len; ++i) {
        double m = -INFINITY;
        for (int64_t j = 0; j < s.kv_len; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < s.dim; ++c)
            dot += double(q[at(b, i, h, c, s.q_len, s.heads, s.dim)]) *
                   k[at(b, j, h / group, c, s.kv_len, s.kv_heads, s.dim)];
          w[j] = dot * scale;
          m = std::max(m, w[j]);
        }
        double sum = 0;
        for (double& x : w) sum += (x = std::exp(x - m));
        for (int64_t c = 0; c < s.dim; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < s.kv_len; ++j) acc += w[j] * v[at(b, j, h / group, c, s.kv_len, s.kv_heads, s.dim)];
          out[at(b, i, h, c, s.q_len, s.heads, s.dim)] = static_cast<float>(acc / sum);
        }
      }
  return out;
}

void expect_within_bounds(const testing::Accuracy& a, const char* what) {
  std::printf("%-40s rel_l2 %.4f cosine %.6f max_err/max_ref %.4f\n", what, a.rel_l2, a.cosine, a.max_error_ratio);
  EXPECT_LE(a.rel_l2, 0.05) << what;
  EXPECT_GE(a.cosine, 0.9985) << what;
  EXPECT_LE(a.max_error_ratio, 0.1) << what;
}

TEST(Attention8Rule, Int8ScaleAndRounding) {
  EXPECT_EQ(attention8::int8_scale(0.0f), 1.0f);
  EXPECT_EQ(attention8::int8_scale(127.0f), 1.0f);
  EXPECT_EQ(attention8::int8_scale(2.54f), 2.54f / 127.0f);
  EXPECT_EQ(attention8::encode_int8(2.5f, 1.0f), 2);  // ties to even
  EXPECT_EQ(attention8::encode_int8(3.5f, 1.0f), 4);
  EXPECT_EQ(attention8::encode_int8(-2.5f, 1.0f), -2);
  EXPECT_EQ(attention8::encode_int8(-0.4f, 1.0f), 0);
  EXPECT_EQ(attention8::encode_int8(300.0f, 1.0f), 127);  // saturates, never wraps
  EXPECT_EQ(attention8::encode_int8(-300.0f, 1.0f), -127);
  const float amax = 3.7f, scale = attention8::int8_scale(amax);
  EXPECT_EQ(attention8::encode_int8(amax, scale), 127);
  EXPECT_EQ(attention8::encode_int8(-amax, scale), -127);
}

// The rule restated plainly, element by element, against attention8::quantize.
TEST(Attention8Rule, QuantizeIsThePlainRule) {
  const Shape s{2, 130, 200, 4, 2, 128};  // ragged blocks, grouped K/V heads
  const auto q = values(s.batch * s.q_len * s.heads, s.dim, 1, 1.0f);
  const auto k = values(s.batch * s.kv_len * s.kv_heads, s.dim, 2, 1.0f, 3.0f, 2);
  const auto v = values(s.batch * s.kv_len * s.kv_heads, s.dim, 3, 0.5f, 0.0f, 3);
  const attention8::Operands o = attention8::quantize(q, k, v, s);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.kv_heads; ++h) {
      for (int64_t c = 0; c < s.dim; ++c) {
        double sum = 0;
        float amax = 0;
        for (int64_t j = 0; j < s.kv_len; ++j) {
          sum += k[at(b, j, h, c, s.kv_len, s.kv_heads, s.dim)];
          amax = std::max(amax, std::fabs(v[at(b, j, h, c, s.kv_len, s.kv_heads, s.dim)]));
        }
        const size_t i = static_cast<size_t>((b * s.kv_heads + h) * s.dim + c);
        const float mean = static_cast<float>(sum / s.kv_len);
        ASSERT_EQ(o.k_mean[i], mean);
        float k_amax = 0, q_amax = 0;
        for (int64_t j = 0; j < s.kv_len; ++j)
          k_amax = std::max(k_amax, std::fabs(k[at(b, j, h, c, s.kv_len, s.kv_heads, s.dim)] - mean));
        for (int64_t j = 0; j < s.q_len; ++j)
          for (int64_t g = 0; g < s.heads / s.kv_heads; ++g)
            q_amax = std::max(q_amax, std::fabs(q[at(b, j, h * (s.heads / s.kv_heads) + g, c, s.q_len, s.heads, s.dim)]));
        ASSERT_EQ(o.balance[i], std::sqrt(k_amax / q_amax));
        ASSERT_EQ(o.v_scales[i], amax > 0 ? amax / 448.0f : 1.0f);
        for (int64_t j = 0; j < s.kv_len; ++j) {
          const size_t e = at(b, j, h, c, s.kv_len, s.kv_heads, s.dim);
          const float code = fp8::decode_e4m3(o.v[e]) * o.v_scales[i];
          ASSERT_LE(std::fabs(code - v[e]), std::fabs(v[e]) / 16 + o.v_scales[i] * 0x1p-9f) << "v element " << e;
        }
      }
    }
  }
  // INT8 blocks: the scale is the block's amax / 127, the codes round to nearest even, the
  // largest magnitude gets ±127, and each value comes back within half a step.
  const auto check_blocks = [&](const std::vector<float>& x, const std::vector<int8_t>& codes,
                                const std::vector<float>& scales, int64_t seq, int64_t heads, const float* mean,
                                int64_t rows) {
    const int64_t group = heads / s.kv_heads;
    const int64_t blocks = (seq + rows - 1) / rows;
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t blk = 0; blk < blocks; ++blk) {
          float amax = 0;
          int max_code = 0;
          const auto value = [&](int64_t r, int64_t c) {
            const float raw = x[at(b, r, h, c, seq, heads, s.dim)];
            const size_t channel = static_cast<size_t>((b * s.kv_heads + h / group) * s.dim + c);
            return mean ? (raw - mean[channel]) / o.balance[channel] : raw * o.balance[channel];
          };
          for (int64_t r = blk * rows; r < std::min(seq, blk * rows + rows); ++r)
            for (int64_t c = 0; c < s.dim; ++c) amax = std::max(amax, std::fabs(value(r, c)));
          const float scale = scales[static_cast<size_t>((b * heads + h) * blocks + blk)];
          ASSERT_EQ(scale, amax / 127.0f);
          for (int64_t r = blk * rows; r < std::min(seq, blk * rows + rows); ++r)
            for (int64_t c = 0; c < s.dim; ++c) {
              const int8_t code = codes[at(b, r, h, c, seq, heads, s.dim)];
              ASSERT_EQ(code, static_cast<int8_t>(std::nearbyint(value(r, c) / scale)));
              // Half a step, give or take the float32 rounding of the quotient (2^-17 of 127).
              ASSERT_LE(std::fabs(code * double(scale) - value(r, c)), scale * (0.5 + 0x1p-16));
              max_code = std::max(max_code, std::abs(int{code}));
            }
          ASSERT_EQ(max_code, 127);
        }
  };
  check_blocks(q, o.q, o.q_scales, s.q_len, s.heads, nullptr, 16);
  check_blocks(k, o.k, o.k_scales, s.kv_len, s.kv_heads, o.k_mean.data(), 128);
}

TEST(Attention8Rule, ZeroBlocksGetScaleOne) {
  const Shape s{1, 128, 128, 1, 1, 128};
  const std::vector<float> zeros(128 * 128, 0.0f);
  const attention8::Operands o = attention8::quantize(zeros, zeros, zeros, s);
  EXPECT_EQ(o.q_scales[0], 1.0f);
  EXPECT_EQ(o.k_scales[0], 1.0f);
  EXPECT_EQ(o.v_scales[0], 1.0f);
  EXPECT_TRUE(std::all_of(o.q.begin(), o.q.end(), [](int8_t c) { return c == 0; }));
  // Every key alike: uniform attention over zero values.
  const std::vector<float> out = attention8::attention(o, 1.0f);
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float x) { return x == 0.0f; }));
}

struct Case {
  const char* what;
  Shape shape;
  float q_sigma, k_offset;
  int k_outliers;
};

// The emulated 8-bit attention against exact attention: Gaussian, keys with per-channel
// offsets and outlier channels (smoothing's case), peaky softmax from large q·k, grouped
// K/V heads and ragged lengths.
TEST(Attention8Rule, EmulationWithinTheBounds) {
  const Case cases[] = {
      {"gaussian", {1, 256, 384, 2, 2, 128}, 1.0f, 0.0f, 0},
      {"key channel offsets and outliers", {1, 256, 384, 2, 2, 128}, 1.0f, 4.0f, 3},
      {"peaky softmax (q x 4)", {1, 200, 300, 2, 1, 128}, 4.0f, 1.0f, 0},
      {"grouped heads, ragged, batch 2", {2, 130, 201, 4, 2, 128}, 1.0f, 2.0f, 1},
  };
  for (const Case& c : cases) {
    const Shape& s = c.shape;
    const auto q = values(s.batch * s.q_len * s.heads, s.dim, 11, c.q_sigma);
    const auto k = values(s.batch * s.kv_len * s.kv_heads, s.dim, 12, 1.0f, c.k_offset, c.k_outliers);
    const auto v = values(s.batch * s.kv_len * s.kv_heads, s.dim, 13, 1.0f, 0.5f, 2);
    const float scale = 1.0f / std::sqrt(128.0f);
    const std::vector<float> ref = exact_attention(q, k, v, s, scale);
    const std::vector<float> got = attention8::attention(attention8::quantize(q, k, v, s), scale);
    expect_within_bounds(testing::accuracy(got, ref), c.what);
  }
}

// Smoothing is what keeps keys with large shared offsets usable: the same keys plus a
// per-channel offset of 30 sigma give nearly the same output.
TEST(Attention8Rule, SmoothingAbsorbsChannelOffsets) {
  const Shape s{1, 128, 256, 1, 1, 128};
  const auto q = values(s.q_len, s.dim, 21, 1.0f);
  const auto k = values(s.kv_len, s.dim, 22, 1.0f);
  const auto v = values(s.kv_len, s.dim, 23, 1.0f);
  std::vector<float> shifted = k;
  for (int64_t j = 0; j < s.kv_len; ++j)
    for (int64_t c = 0; c < s.dim; ++c)
      shifted[j * s.dim + c] = bf16_bits_to_float(float_to_bf16_bits(k[j * s.dim + c] + 30.0f * ((c % 7) - 3)));
  const float scale = 1.0f / std::sqrt(128.0f);
  // Exact attention is blind to the offsets (up to their bfloat16 rounding); so must the 8-bit one be.
  const std::vector<float> ref = exact_attention(q, shifted, v, s, scale);
  expect_within_bounds(testing::accuracy(attention8::attention(attention8::quantize(q, shifted, v, s), scale), ref),
                       "keys + 30-sigma channel offsets");
}

Tensor bf16_tensor(const std::vector<float>& v, const fastdit::Shape& shape) {
  return Tensor::from_vector(v, shape).to(DType::BFloat16);
}

TEST(Attention8Op, CpuIsTheEmulationAndRefusesWhatItCannotServe) {
  const Shape s{1, 130, 140, 2, 1, 128};
  const auto q = values(s.q_len * s.heads, s.dim, 31, 1.0f);
  const auto k = values(s.kv_len * s.kv_heads, s.dim, 32, 1.0f, 1.0f);
  const auto v = values(s.kv_len * s.kv_heads, s.dim, 33, 1.0f);
  const Tensor tq = bf16_tensor(q, {1, s.q_len, s.heads, 128}), tk = bf16_tensor(k, {1, s.kv_len, 1, 128}),
               tv = bf16_tensor(v, {1, s.kv_len, 1, 128});
  EXPECT_EQ(ops::attention_8bit_refusal(tq, tk, tv), "");
  const Tensor out = ops::attention_8bit(tq, tk, tv);
  EXPECT_EQ(out.dtype(), DType::BFloat16);
  const std::vector<float> want = attention8::attention(attention8::quantize(q, k, v, s), 1.0f / std::sqrt(128.0f));
  EXPECT_EQ(testing::max_abs_diff(out, bf16_tensor(want, out.shape())), 0.0);

  const Tensor f32 = tq.to(DType::Float32);
  EXPECT_NE(ops::attention_8bit_refusal(f32, tk.to(DType::Float32), tv.to(DType::Float32)).find("bfloat16"),
            std::string::npos);
  const Tensor d64 = Tensor::zeros({1, 8, 2, 64}, DType::BFloat16);
  EXPECT_NE(ops::attention_8bit_refusal(d64, d64, d64).find("head dim must be 128"), std::string::npos);
  const Tensor three_heads = Tensor::zeros({1, 8, 3, 128}, DType::BFloat16);
  const Tensor two_heads = Tensor::zeros({1, 8, 2, 128}, DType::BFloat16);
  EXPECT_FALSE(ops::attention_8bit_refusal(three_heads, two_heads, two_heads).empty());
  EXPECT_THROW(ops::attention_8bit(d64, d64, d64), Error);
}

TEST(Attention8Op, ScopeRoutesSelfAttentionAndRestores) {
  EXPECT_FALSE(ops::quantized_attention());
  const Shape s{1, 64, 64, 2, 2, 128};
  const Tensor q = bf16_tensor(values(64 * 2, 128, 41, 1.0f), {1, 64, 2, 128});
  const Tensor k = bf16_tensor(values(64 * 2, 128, 42, 1.0f), {1, 64, 2, 128});
  const Tensor v = bf16_tensor(values(64 * 2, 128, 43, 1.0f), {1, 64, 2, 128});
  const nn::DistributedAttention attention;
  const Tensor exact = attention.forward(q, k, v, 64, nullptr, ops::RopeStyle::Interleaved).out;
  EXPECT_EQ(testing::max_abs_diff(exact, ops::attention(q, k, v)), 0.0);
  {
    const ops::QuantizedAttentionScope on(true);
    EXPECT_TRUE(ops::quantized_attention());
    const Tensor quantized = attention.forward(q, k, v, 64, nullptr, ops::RopeStyle::Interleaved).out;
    EXPECT_EQ(testing::max_abs_diff(quantized, ops::attention_8bit(q, k, v)), 0.0);
    EXPECT_GT(testing::max_abs_diff(quantized, exact), 0.0);
    {
      const ops::QuantizedAttentionScope off(false);
      EXPECT_FALSE(ops::quantized_attention());
    }
    EXPECT_TRUE(ops::quantized_attention());
  }
  EXPECT_FALSE(ops::quantized_attention());
}

}  // namespace
}  // namespace fastdit
