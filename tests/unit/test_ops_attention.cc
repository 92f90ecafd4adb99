// attention and rope against plain double-precision references. Tolerances are on
// max |out - ref| relative to max(1, max |ref|).
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <functional>
#include <string>
#include <tuple>

#include "ops/ops.h"
#include "support/op_reference.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

using testing::expect_close;
using testing::expect_error;
using testing::expect_rounded_from_float32;
using testing::random_in;
using testing::random_tensor;
using testing::to_doubles;

// ---- attention ---------------------------------------------------------------------

// softmax(q·kᵀ·scale + mask)·v per (b, h, i) in double, query head h with K/V head
// h / (H / Hkv); a row with every key masked out is zero.
std::vector<double> attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const Tensor& mask, double scale) {
  const int64_t batch = q.size(0), sq = q.size(1), heads = q.size(2), d = q.size(3);
  const int64_t sk = k.size(1), dv = v.size(3), kv_heads = k.size(2), group = heads / kv_heads;
  const auto qs = to_doubles(q), ks = to_doubles(k), vs = to_doubles(v);
  const auto ms = mask.defined() ? to_doubles(mask) : std::vector<double>();
  const bool boolean = mask.defined() && mask.dtype() == DType::Bool;
  std::vector<double> out(batch * sq * heads * dv, 0.0);
  std::vector<double> scores(sk);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < sq; ++i) {
        double max = -INFINITY;
        for (int64_t j = 0; j < sk; ++j) {
          double s = 0;
          for (int64_t c = 0; c < d; ++c) {
            s += qs[((b * sq + i) * heads + h) * d + c] * ks[((b * sk + j) * kv_heads + h / group) * d + c];
          }
          s *= scale;
          if (mask.defined()) {
            const double m = ms[testing::broadcast_source({b, h, i, j}, mask.shape())];
            s += boolean ? (m != 0 ? 0.0 : -INFINITY) : m;
          }
          scores[j] = s;
          max = std::max(max, s);
        }
        if (max == -INFINITY) continue;
        double sum = 0;
        for (double& s : scores) sum += (s = std::exp(s - max));
        double* o = out.data() + ((b * sq + i) * heads + h) * dv;
        for (int64_t j = 0; j < sk; ++j) {
          for (int64_t c = 0; c < dv; ++c) o[c] += scores[j] / sum * vs[((b * sk + j) * kv_heads + h / group) * dv + c];
        }
      }
    }
  }
  return out;
}

struct AttentionCase {
  int64_t batch, q_len, kv_len, heads, head_dim, value_dim;
};

const AttentionCase kAttentionCases[] = {
    {1, 1, 1, 1, 1, 1},    {2, 37, 37, 3, 72, 72}, {1, 5, 130, 2, 64, 40},
    {3, 17, 1, 1, 8, 8},   {1, 70, 33, 2, 13, 7},  {2, 16, 64, 4, 32, 32},
};

TEST(OpsAttention, MatchesReferenceOnAwkwardShapes) {
  uint64_t seed = 200;
  for (const auto& c : kAttentionCases) {
    const Tensor q = random_tensor({c.batch, c.q_len, c.heads, c.head_dim}, seed++, -2.0f, 2.0f);
    const Tensor k = random_tensor({c.batch, c.kv_len, c.heads, c.head_dim}, seed++, -2.0f, 2.0f);
    const Tensor v = random_tensor({c.batch, c.kv_len, c.heads, c.value_dim}, seed++);
    const Tensor out = ops::attention(q, k, v);
    EXPECT_EQ(out.shape(), (Shape{c.batch, c.q_len, c.heads, c.value_dim}));
    expect_close(out, attention_reference(q, k, v, {}, 1.0 / std::sqrt(double(c.head_dim))), 1e-5);
  }
}

TEST(OpsAttention, ExplicitScaleAndLargeLogits) {
  const Tensor q = random_tensor({1, 23, 2, 24}, 210, -4.0f, 4.0f);
  const Tensor k = random_tensor({1, 81, 2, 24}, 211, -4.0f, 4.0f);
  const Tensor v = random_tensor({1, 81, 2, 24}, 212);
  expect_close(ops::attention(q, k, v, {}, 0.7f), attention_reference(q, k, v, {}, 0.7f), 1e-5);
}

TEST(OpsAttention, NonContiguousHeadMajorInputs) {
  // [B, H, S, D] tensors permuted into the [B, S, H, D] layout the op takes.
  const Tensor q = random_tensor({2, 3, 9, 16}, 220).permute({0, 2, 1, 3});
  const Tensor k = random_tensor({2, 3, 11, 16}, 221).permute({0, 2, 1, 3});
  const Tensor v = random_tensor({2, 3, 11, 5}, 222).permute({0, 2, 1, 3});
  ASSERT_FALSE(q.is_contiguous());
  expect_close(ops::attention(q, k, v),
               attention_reference(q.contiguous(), k.contiguous(), v.contiguous(), {}, 0.25), 1e-5);
}

Tensor bool_tensor(const Shape& shape, const std::function<bool(int64_t)>& value) {
  std::vector<bool> bits(shape_numel(shape));
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = value(static_cast<int64_t>(i));
  Tensor t = Tensor::empty(shape, DType::Bool);
  auto* p = static_cast<uint8_t*>(t.data_ptr());
  for (size_t i = 0; i < bits.size(); ++i) p[i] = bits[i];
  return t;
}

// Grouped K/V heads: query head h reads K/V head h / (H / Hkv), with and without a key mask.
TEST(OpsAttention, GroupedKeyValueHeads) {
  uint64_t seed = 260;
  for (const auto& [heads, kv_heads, q_len, kv_len] : {std::tuple{4, 2, 17, 5}, std::tuple{8, 2, 3, 70},
                                                     std::tuple{6, 1, 9, 9}, std::tuple{24, 12, 33, 130}}) {
    const Tensor q = random_tensor({2, q_len, heads, 16}, seed++, -2.0f, 2.0f);
    const Tensor k = random_tensor({2, kv_len, kv_heads, 16}, seed++, -2.0f, 2.0f);
    const Tensor v = random_tensor({2, kv_len, kv_heads, 12}, seed++);
    expect_close(ops::attention(q, k, v), attention_reference(q, k, v, {}, 0.25), 1e-5);
    const Tensor mask = bool_tensor({2, 1, 1, kv_len}, [](int64_t i) { return i % 3 != 1; });
    expect_close(ops::attention(q, k, v, mask), attention_reference(q, k, v, mask, 0.25), 1e-5);
  }
}

TEST(OpsAttention, BoolMasksBroadcast) {
  const int64_t batch = 2, sq = 19, sk = 70, heads = 3;
  const Tensor q = random_tensor({batch, sq, heads, 12}, 230, -2.0f, 2.0f);
  const Tensor k = random_tensor({batch, sk, heads, 12}, 231, -2.0f, 2.0f);
  const Tensor v = random_tensor({batch, sk, heads, 12}, 232);
  // Key padding per batch item, [B, 1, 1, Sk]: item 0 sees 70 keys, item 1 sees 41.
  const Tensor padding = bool_tensor({batch, 1, 1, sk}, [&](int64_t i) { return i % sk < (i < sk ? 70 : 41); });
  // Causal-like band over [Sq, Sk], shared by every batch item and head.
  const Tensor band = bool_tensor({sq, sk}, [&](int64_t i) { return i % sk <= i / sk * 3; });
  // Random per-head pattern, [H, Sq, Sk].
  const Tensor random_heads = bool_tensor({heads, sq, sk}, [](int64_t i) { return (i * 2654435761u) % 7 < 4; });
  for (const Tensor& mask : {padding, band, random_heads}) {
    expect_close(ops::attention(q, k, v, mask), attention_reference(q, k, v, mask, 1 / std::sqrt(12.0)), 1e-5);
  }
}

TEST(OpsAttention, FloatMasksAdd) {
  const Tensor q = random_tensor({2, 7, 2, 10}, 240), k = random_tensor({2, 9, 2, 10}, 241);
  const Tensor v = random_tensor({2, 9, 2, 6}, 242);
  const double scale = 1 / std::sqrt(10.0);
  for (const Shape& shape : {Shape{2, 2, 7, 9}, Shape{9}, Shape{7, 1}, Shape{2, 1, 1, 9}}) {
    const Tensor mask = random_tensor(shape, 243, -3.0f, 3.0f);
    expect_close(ops::attention(q, k, v, mask), attention_reference(q, k, v, mask, scale), 1e-5);
    const Tensor mask_bf16 = mask.to(DType::BFloat16);
    expect_close(ops::attention(q, k, v, mask_bf16), attention_reference(q, k, v, mask_bf16, scale), 1e-5);
  }
}

TEST(OpsAttention, FullyMaskedRowsAreZero) {
  const Tensor q = random_tensor({1, 4, 1, 8}, 250), k = random_tensor({1, 100, 1, 8}, 251);
  const Tensor v = random_tensor({1, 100, 1, 8}, 252);
  // Query rows 1 and 3 may attend to nothing; row 2 only to the last key.
  const Tensor mask = bool_tensor({4, 100}, [](int64_t i) {
    const int64_t row = i / 100, key = i % 100;
    return row == 0 || (row == 2 && key == 99);
  });
  const Tensor out = ops::attention(q, k, v, mask);
  expect_close(out, attention_reference(q, k, v, mask, 1 / std::sqrt(8.0)), 1e-6);
  const auto values = to_doubles(out);
  for (int64_t c = 0; c < 8; ++c) {
    EXPECT_EQ(values[1 * 8 + c], 0.0);
    EXPECT_EQ(values[3 * 8 + c], 0.0);
    EXPECT_FLOAT_EQ(values[2 * 8 + c], v.to_float_vector()[99 * 8 + c]);
  }
}

TEST(OpsAttention, LowPrecisionIsFloat32Rounded) {
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    const Tensor q = random_in(dtype, {2, 37, 2, 72}, 260), k = random_in(dtype, {2, 45, 2, 72}, 261);
    const Tensor v = random_in(dtype, {2, 45, 2, 40}, 262);
    const Tensor out = ops::attention(q, k, v);
    EXPECT_EQ(out.dtype(), dtype);
    expect_rounded_from_float32(out, ops::attention(q.to(DType::Float32), k.to(DType::Float32),
                                                    v.to(DType::Float32)));
  }
}

TEST(OpsAttention, RejectsBadArguments) {
  const Tensor q = random_tensor({1, 4, 2, 8}, 1), k = random_tensor({1, 6, 2, 8}, 2);
  const Tensor v = random_tensor({1, 6, 2, 8}, 3);
  expect_error([&] { ops::attention(q.reshape({4, 2, 8}), k, v); }, "attention: q [4, 2, 8] must have rank 4");
  expect_error([&] { ops::attention(q, random_tensor({1, 6, 2, 9}, 4), v); },
               "attention: q and k head dims differ: q [1, 4, 2, 8], k [1, 6, 2, 9]");
  expect_error([&] { ops::attention(q, k, random_tensor({1, 5, 2, 8}, 4)); },
               "attention: k and v sequence lengths differ");
  expect_error([&] { ops::attention(q, random_tensor({1, 6, 3, 8}, 4), v); },
               "attention: k and v need one head count that divides q's");
  expect_error([&] { ops::attention(q, random_tensor({1, 6, 1, 8}, 4), v); },
               "attention: k and v need one head count that divides q's");
  expect_error([&] { ops::attention(q, random_tensor({2, 6, 2, 8}, 4), v); }, "attention: batch sizes differ");
  expect_error([&] { ops::attention(q, k, v.to(DType::BFloat16)); }, "attention: q, k and v must share a dtype");
  expect_error([&] { ops::attention(q, k, v, random_tensor({4, 5}, 4)); },
               "attention: mask [4, 5] does not broadcast to [B, H, Sq, Sk] = [1, 2, 4, 6]");
  expect_error([&] { ops::attention(q, k, v, random_tensor({1, 1, 1, 4, 6}, 4)); }, "does not broadcast");
  expect_error([&] { ops::attention(q, k, v, random_tensor({4, 6}, 4).to(DType::Int32)); },
               "attention: mask has dtype int32");
}

// ---- rope --------------------------------------------------------------------------

// out = x·cos + rotate(x)·sin over the table's first R dims, with rotate written out from
// its definition (split halves pair i with i + R/2); dims R… are x itself.
std::vector<double> rope_reference(const Tensor& x, const Tensor& cos, const Tensor& sin,
                                   ops::RopeStyle style) {
  const auto xs = to_doubles(x), cs = to_doubles(cos), ss = to_doubles(sin);
  const int64_t seq = x.size(1), heads = x.size(2), d = x.size(3), rows = x.numel() / d, r_dim = cos.size(1);
  std::vector<double> out(xs.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t s = r / heads % seq;
    const double* xr = xs.data() + r * d;
    for (int64_t i = 0; i < d; ++i) {
      if (i >= r_dim) {
        out[r * d + i] = xr[i];
        continue;
      }
      double rotated;
      if (style == ops::RopeStyle::Interleaved) {
        rotated = i % 2 == 0 ? -xr[i + 1] : xr[i - 1];
      } else {
        rotated = i < r_dim / 2 ? -xr[i + r_dim / 2] : xr[i - r_dim / 2];
      }
      out[r * d + i] = xr[i] * cs[s * r_dim + i] + rotated * ss[s * r_dim + i];
    }
  }
  return out;
}

// Stable Audio's partial rotation: the table covers part of each head (half of 64, 2 of 6,
// all of 8), the rest passes through untouched.
TEST(OpsRope, PartialTablesRotateTheLeadingDimsOnly) {
  uint64_t seed = 340;
  for (const auto& [shape, rotary] : {std::pair{Shape{2, 11, 3, 64}, int64_t{32}}, std::pair{Shape{1, 5, 2, 6}, int64_t{2}},
                                      std::pair{Shape{1, 4, 1, 8}, int64_t{8}}}) {
    const Tensor x = random_tensor(shape, seed++);
    const Tensor cos = random_tensor({shape[1], rotary}, seed++), sin = random_tensor({shape[1], rotary}, seed++);
    for (auto style : {ops::RopeStyle::Interleaved, ops::RopeStyle::SplitHalf}) {
      const Tensor y = ops::rope(x, cos, sin, style);
      expect_close(y, rope_reference(x, cos, sin, style), 1e-6);
      expect_close(y.narrow(3, rotary, shape[3] - rotary), to_doubles(x.narrow(3, rotary, shape[3] - rotary)), 0.0);
    }
  }
  const Tensor x = random_tensor({1, 3, 1, 8}, 350);
  expect_error([&] { ops::rope(x, random_tensor({3, 3}, 1), random_tensor({3, 3}, 2), ops::RopeStyle::SplitHalf); },
               "R even, at most D = 8");
  expect_error([&] { ops::rope(x, random_tensor({3, 10}, 1), random_tensor({3, 10}, 2), ops::RopeStyle::SplitHalf); },
               "R even, at most D = 8");
}

TEST(OpsRope, ArbitraryTablesBothStyles) {
  uint64_t seed = 300;
  for (const Shape& shape : {Shape{2, 7, 3, 16}, Shape{1, 1, 1, 2}, Shape{1, 37, 2, 72}}) {
    const Tensor x = random_tensor(shape, seed++);
    const Tensor cos = random_tensor({shape[1], shape[3]}, seed++);
    const Tensor sin = random_tensor({shape[1], shape[3]}, seed++);
    for (auto style : {ops::RopeStyle::Interleaved, ops::RopeStyle::SplitHalf}) {
      const Tensor y = ops::rope(x, cos, sin, style);
      EXPECT_EQ(y.shape(), shape);
      expect_close(y, rope_reference(x, cos, sin, style), 1e-6);
    }
  }
}

// With real angle tables, interleaved rope is the complex rotation (x[2i] + i·x[2i+1])·e^{iθ}
// that Wan and Flux write with view_as_complex.
TEST(OpsRope, InterleavedIsComplexRotation) {
  const int64_t seq = 5, heads = 2, d = 12;
  const Tensor x = random_tensor({1, seq, heads, d}, 310);
  std::vector<float> cos(seq * d), sin(seq * d), angles(seq * d / 2);
  for (int64_t s = 0; s < seq; ++s) {
    for (int64_t p = 0; p < d / 2; ++p) {
      const double theta = s * std::pow(10000.0, -2.0 * p / d);
      angles[s * d / 2 + p] = static_cast<float>(theta);
      cos[s * d + 2 * p] = cos[s * d + 2 * p + 1] = static_cast<float>(std::cos(theta));
      sin[s * d + 2 * p] = sin[s * d + 2 * p + 1] = static_cast<float>(std::sin(theta));
    }
  }
  const Tensor y = ops::rope(x, Tensor::from_vector(cos, {seq, d}), Tensor::from_vector(sin, {seq, d}),
                             ops::RopeStyle::Interleaved);
  const auto xs = to_doubles(x);
  std::vector<double> expected(xs.size());
  for (int64_t s = 0; s < seq; ++s) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t p = 0; p < d / 2; ++p) {
        const int64_t at = (s * heads + h) * d + 2 * p;
        const std::complex<double> z(xs[at], xs[at + 1]);
        const std::complex<double> r = z * std::polar(1.0, double(angles[s * d / 2 + p]));
        expected[at] = r.real();
        expected[at + 1] = r.imag();
      }
    }
  }
  expect_close(y, expected, 1e-6);
}

TEST(OpsRope, LowPrecisionAndErrors) {
  const Tensor x = random_in(DType::BFloat16, {2, 9, 3, 40}, 320);
  const Tensor cos = random_tensor({9, 40}, 321), sin = random_tensor({9, 40}, 322);
  for (auto style : {ops::RopeStyle::Interleaved, ops::RopeStyle::SplitHalf}) {
    const Tensor y = ops::rope(x, cos, sin, style);
    EXPECT_EQ(y.dtype(), DType::BFloat16);
    expect_rounded_from_float32(y, ops::rope(x.to(DType::Float32), cos, sin, style));
  }
  expect_error([&] { ops::rope(random_tensor({1, 9, 1, 5}, 1), random_tensor({9, 5}, 2), random_tensor({9, 5}, 3),
                               ops::RopeStyle::SplitHalf); },
               "rope: head dim of x [1, 9, 1, 5] must be even");
  expect_error([&] { ops::rope(x, random_tensor({8, 40}, 2), sin, ops::RopeStyle::Interleaved); },
               "rope: cos [8, 40] and sin [9, 40] must both be [S, R], [S, H, R] or [B or 1, S, H or 1, R] with S = 9");
  expect_error([&] { ops::rope(x, random_tensor({9, 2, 40}, 2), random_tensor({9, 2, 40}, 3), ops::RopeStyle::SplitHalf); },
               "rope: cos [9, 2, 40] and sin [9, 2, 40] must both be");
  expect_error([&] { ops::rope(x.reshape({18, 3, 40}), cos, sin, ops::RopeStyle::Interleaved); },
               "rope: x [18, 3, 40] must have rank 4");
}

// A table per batch item ([B, S, 1, R]) or per head ([S, H, R]) rotates each item or head by its
// own rows: the same as rotating it alone with a shared [S, R] table.
TEST(OpsRope, PerItemAndPerHeadTables) {
  const Tensor x = random_tensor({2, 5, 3, 12}, 340);
  const Tensor item_cos = random_tensor({2, 5, 1, 8}, 341), item_sin = random_tensor({2, 5, 1, 8}, 342);
  const Tensor head_cos = random_tensor({5, 3, 12}, 343), head_sin = random_tensor({5, 3, 12}, 344);
  for (auto style : {ops::RopeStyle::Interleaved, ops::RopeStyle::SplitHalf}) {
    const Tensor by_item = ops::rope(x, item_cos, item_sin, style);
    const Tensor by_head = ops::rope(x, head_cos, head_sin, style);
    for (int64_t b = 0; b < 2; ++b) {
      const auto rows = [&](const Tensor& t) { return t.narrow(0, b, 1).contiguous().reshape({5, 8}); };
      const Tensor alone = ops::rope(x.narrow(0, b, 1).contiguous(), rows(item_cos), rows(item_sin), style);
      EXPECT_EQ(testing::max_abs_diff(by_item.narrow(0, b, 1).contiguous(), alone), 0.0) << b;
    }
    for (int64_t h = 0; h < 3; ++h) {
      const auto rows = [&](const Tensor& t) { return t.narrow(1, h, 1).contiguous().reshape({5, 12}); };
      const Tensor alone = ops::rope(x.narrow(2, h, 1).contiguous(), rows(head_cos), rows(head_sin), style);
      EXPECT_EQ(testing::max_abs_diff(by_head.narrow(2, h, 1).contiguous(), alone), 0.0) << h;
    }
  }
}

TEST(OpsRope, QkvNormRopeIsTheSeparateOpsAndRejectsBadArguments) {
  const int64_t heads = 3, head_dim = 8, d = heads * head_dim;
  const Tensor qkv = random_tensor({2, 5, 3 * d}, 330), wq = random_tensor({d}, 331), wk = random_tensor({d}, 332);
  const Tensor cos = random_tensor({5, head_dim}, 333), sin = random_tensor({5, head_dim}, 334);
  const Shape shape{2, 5, heads, head_dim};
  const ops::QKV got = ops::qkv_norm_rope(qkv, wq, wk, 1e-6f, heads, cos, sin, ops::RopeStyle::Interleaved);
  const auto part = [&](int64_t i) { return qkv.narrow(-1, i * d, d); };
  const auto separate = [&](int64_t i, const Tensor& w) {
    return testing::to_doubles(ops::rope(ops::rms_norm(part(i), w, 1e-6f).reshape(shape), cos, sin,
                                         ops::RopeStyle::Interleaved));
  };
  expect_close(got.q, separate(0, wq), 1e-6);
  expect_close(got.k, separate(1, wk), 1e-6);
  expect_close(got.v, testing::to_doubles(part(2).reshape(shape)), 0.0);
  // An empty feature dim splits into no heads: an error, not a division by zero.
  expect_error([&] { ops::qkv_norm_rope(random_tensor({2, 5, 0}, 1), random_tensor({0}, 2), random_tensor({0}, 3),
                                        1e-6f, heads, cos, sin, ops::RopeStyle::Interleaved); },
               "qkv_norm_rope: qkv [2, 5, 0] does not split into 3 x 3 heads of an even size");
  expect_error([&] { ops::qkv_norm_rope(random_tensor({2, 5, 3 * d + 1}, 1), wq, wk, 1e-6f, heads, cos, sin,
                                        ops::RopeStyle::Interleaved); },
               "qkv_norm_rope: qkv [2, 5, 73] does not split into 3 x 3 heads of an even size");
}

// Tables per (item, token, head), as ops::rope takes them (LTX-2's per-head frequency
// slices): the separate ops with the same table, both pair styles; a table that does not
// rotate whole heads or fit the batch is refused.
TEST(OpsRope, QkvNormRopeTakesPerHeadTables) {
  const int64_t heads = 3, head_dim = 8, d = heads * head_dim;
  const Shape shape{2, 5, heads, head_dim};
  const Tensor qkv = random_tensor({2, 5, 3 * d}, 350), wq = random_tensor({d}, 351), wk = random_tensor({d}, 352);
  for (const Shape& table : {Shape{1, 5, heads, head_dim}, Shape{2, 5, heads, head_dim}, Shape{2, 5, 1, head_dim},
                             Shape{5, heads, head_dim}}) {
    const Tensor cos = random_tensor(table, 353), sin = random_tensor(table, 354);
    for (ops::RopeStyle style : {ops::RopeStyle::SplitHalf, ops::RopeStyle::Interleaved}) {
      const ops::QKV got = ops::qkv_norm_rope(qkv, wq, wk, 1e-6f, heads, cos, sin, style);
      const auto separate = [&](int64_t i, const Tensor& w) {
        return ops::rope(ops::rms_norm(qkv.narrow(-1, i * d, d), w, 1e-6f).reshape(shape), cos, sin, style);
      };
      EXPECT_EQ(testing::max_abs_diff(got.q, separate(0, wq)), 0.0) << shape_str(table);
      EXPECT_EQ(testing::max_abs_diff(got.k, separate(1, wk)), 0.0) << shape_str(table);
      EXPECT_EQ(testing::max_abs_diff(got.v, qkv.narrow(-1, 2 * d, d).contiguous().reshape(shape)), 0.0);
    }
  }
  for (const Shape& bad : {Shape{3, 5, heads, head_dim}, Shape{1, 5, heads, head_dim / 2}, Shape{1, 5, 2, head_dim}}) {
    expect_error([&] {
      ops::qkv_norm_rope(qkv, wq, wk, 1e-6f, heads, random_tensor(bad, 1), random_tensor(bad, 2),
                         ops::RopeStyle::SplitHalf);
    }, "qkv_norm_rope: cos/sin must be [S, D/H], [S, H, D/H] or [B or 1, S, H or 1, D/H] with S = 5, H = 3, D/H = 8, B = 2");
  }
}

// Per-head norms: each head's values normalised alone (weights [head_dim]), in bfloat16
// rounded before the weight and again before the rotation: the separate per-head modules.
TEST(OpsRope, QkvNormRopePerHeadIsThePerHeadModules) {
  const int64_t heads = 3, head_dim = 8, d = heads * head_dim;
  const Shape shape{2, 5, heads, head_dim};
  const Tensor cos = random_tensor({5, head_dim}, 343), sin = random_tensor({5, head_dim}, 344);
  for (DType dtype : {DType::Float32, DType::BFloat16}) {
    const Tensor qkv = random_tensor({2, 5, 3 * d}, 340, -3.0f, 3.0f).to(dtype);
    const Tensor wq = random_tensor({head_dim}, 341, 0.5f, 2.0f).to(dtype), wk = random_tensor({head_dim}, 342).to(dtype);
    const ops::QKV got =
        ops::qkv_norm_rope(qkv, wq, wk, 1e-6f, heads, cos, sin, ops::RopeStyle::Interleaved, ops::QkNorm::PerHead);
    const auto part = [&](int64_t i) { return qkv.narrow(-1, i * d, d).contiguous().reshape(shape); };
    const auto modules = [&](int64_t i, const Tensor& w) {
      return ops::rope(ops::mul(ops::rms_norm(part(i), {}, 1e-6f), w), cos, sin, ops::RopeStyle::Interleaved);
    };
    EXPECT_EQ(testing::max_abs_diff(got.q, modules(0, wq)), 0.0) << dtype_name(dtype);
    EXPECT_EQ(testing::max_abs_diff(got.k, modules(1, wk)), 0.0) << dtype_name(dtype);
    EXPECT_EQ(testing::max_abs_diff(got.v, part(2)), 0.0) << dtype_name(dtype);
    // Not the across-heads norm.
    const Tensor across = ops::concat(std::vector<Tensor>(3, wq), 0);
    EXPECT_GT(testing::max_abs_diff(
                  got.q, ops::qkv_norm_rope(qkv, across, across, 1e-6f, heads, cos, sin, ops::RopeStyle::Interleaved).q),
              0.0);
  }
  // PerHeadOnce (torch.nn.RMSNorm per head: Flux): the weight applied in float32, one
  // rounding; the weights may be of another dtype; qkv may be the q|k|v columns of a wider
  // projection (Flux's single blocks), read in place.
  for (DType dtype : {DType::Float32, DType::BFloat16}) {
    const Tensor wide = random_tensor({2, 5, 3 * d + 16}, 345, -3.0f, 3.0f).to(dtype);
    const Tensor qkv = wide.narrow(-1, 0, 3 * d);
    const Tensor wq = random_tensor({head_dim}, 346, 0.5f, 2.0f), wk = random_tensor({head_dim}, 347).to(dtype);
    const ops::QKV got =
        ops::qkv_norm_rope(qkv, wq, wk, 1e-6f, heads, cos, sin, ops::RopeStyle::Interleaved, ops::QkNorm::PerHeadOnce);
    const auto part = [&](int64_t i) { return qkv.narrow(-1, i * d, d).contiguous().reshape(shape); };
    const auto modules = [&](int64_t i, const Tensor& w) {
      return ops::rope(ops::rms_norm(part(i), w, 1e-6f), cos, sin, ops::RopeStyle::Interleaved);
    };
    EXPECT_EQ(testing::max_abs_diff(got.q, modules(0, wq)), 0.0) << dtype_name(dtype);
    EXPECT_EQ(testing::max_abs_diff(got.k, modules(1, wk)), 0.0) << dtype_name(dtype);
    EXPECT_EQ(testing::max_abs_diff(got.v, part(2)), 0.0) << dtype_name(dtype);
    if (dtype == DType::BFloat16) {  // not the rounding before the weight
      const Tensor w = wq.to(dtype);
      EXPECT_GT(testing::max_abs_diff(
                    ops::qkv_norm_rope(qkv, w, w, 1e-6f, heads, cos, sin, ops::RopeStyle::Interleaved,
                                       ops::QkNorm::PerHeadOnce).q,
                    ops::qkv_norm_rope(qkv, w, w, 1e-6f, heads, cos, sin, ops::RopeStyle::Interleaved,
                                       ops::QkNorm::PerHead).q),
                0.0);
    }
  }
  expect_error([&] {
    ops::qkv_norm_rope(random_tensor({2, 5, 3 * d}, 1), random_tensor({d}, 2), random_tensor({d}, 3), 1e-6f, heads, cos,
                       sin, ops::RopeStyle::Interleaved, ops::QkNorm::PerHead);
  }, "norm_q");
  expect_error([&] {
    ops::qkv_norm_rope(random_tensor({2, 5, 3 * d}, 1).to(DType::BFloat16), random_tensor({head_dim}, 2),
                       random_tensor({head_dim}, 3), 1e-6f, heads, cos, sin, ops::RopeStyle::Interleaved,
                       ops::QkNorm::PerHead);
  }, "qkv_norm_rope: per-head norms round before the weight and need the weights in qkv's dtype (bfloat16), got float32 and float32");
}

}  // namespace
}  // namespace fastdit
