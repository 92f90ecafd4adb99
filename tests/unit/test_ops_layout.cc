// Layout ops (permute, transpose, concat, split, cast) and embeddings (conv3d_patch,
// timestep_embedding) against plain references. Layout ops move values, so they must
// match exactly; the embeddings are held to max |out - ref| relative to max(1, max |ref|).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "core/half.h"
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

// A fresh contiguous tensor that does not share the input's storage.
void expect_new_contiguous(const Tensor& out, const Tensor& in) {
  EXPECT_TRUE(out.is_contiguous());
  EXPECT_NE(out.data_ptr(), in.data_ptr());
}

// ---- permute / transpose -----------------------------------------------------------

std::vector<double> permute_reference(const Tensor& x, const std::vector<int64_t>& dims) {
  const auto xs = to_doubles(x);
  Shape shape(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) shape[i] = x.size(dims[i]);
  std::vector<double> out(xs.size());
  const Shape strides = contiguous_strides(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    const auto index = testing::unravel(i, shape);
    int64_t source = 0;
    for (size_t d = 0; d < dims.size(); ++d) source += index[d] * strides[dims[d]];
    out[i] = xs[source];
  }
  return out;
}

TEST(OpsLayout, PermuteAndTranspose) {
  const Tensor x = random_tensor({2, 3, 5, 7}, 400);
  const std::vector<int64_t> dims{3, 0, 2, 1};
  const Tensor p = ops::permute(x, dims);
  EXPECT_EQ(p.shape(), (Shape{7, 2, 5, 3}));
  expect_new_contiguous(p, x);
  EXPECT_EQ(to_doubles(p), permute_reference(x, dims));

  const Tensor t = ops::transpose(x, -1, 1);
  EXPECT_EQ(t.shape(), (Shape{2, 7, 5, 3}));
  EXPECT_EQ(to_doubles(t), permute_reference(x, {0, 3, 2, 1}));

  const std::vector<int64_t> identity{0, 1, 2, 3};
  expect_new_contiguous(ops::permute(x, identity), x);

  const Tensor half = x.to(DType::BFloat16);
  const Tensor hp = ops::permute(half, dims);
  EXPECT_EQ(hp.dtype(), DType::BFloat16);
  EXPECT_EQ(to_doubles(hp), permute_reference(half, dims));
  expect_error([&] { ops::transpose(x, 0, 4); }, "transpose: dim 4 out of range for [2, 3, 5, 7]");
}

// ---- concat / split ----------------------------------------------------------------

TEST(OpsLayout, ConcatAlongEveryDim) {
  for (int64_t dim : {0, 1, 2}) {
    Shape a{2, 3, 4}, b{2, 3, 4}, c{2, 3, 4};
    a[dim] = 1;
    b[dim] = 0;
    c[dim] = 5;
    const std::vector<Tensor> parts{random_tensor(a, 410), random_tensor(b, 411), random_tensor(c, 412)};
    const Tensor out = ops::concat(parts, dim);
    Shape expected{2, 3, 4};
    expected[dim] = 6;
    ASSERT_EQ(out.shape(), expected);
    const auto got = to_doubles(out);
    const auto first = to_doubles(parts[0]), last = to_doubles(parts[2]);
    for (int64_t i = 0; i < out.numel(); ++i) {
      auto index = testing::unravel(i, expected);
      const bool from_first = index[dim] == 0;
      if (!from_first) index[dim] -= 1;
      const Shape& source_shape = from_first ? a : c;
      int64_t flat = 0;
      for (size_t d = 0; d < index.size(); ++d) flat = flat * source_shape[d] + index[d];
      EXPECT_EQ(got[i], from_first ? first[flat] : last[flat]) << "dim " << dim << " element " << i;
    }
  }
}

TEST(OpsLayout, ConcatKeepsAnyDtypeAndStridedInputs) {
  const Tensor a = Tensor::from_vector<int64_t>({1, 2, 3, 4}, {2, 2});
  const Tensor b = Tensor::from_vector<int64_t>({5, 6}, {2, 1});
  const Tensor out = ops::concat(std::vector<Tensor>{a.transpose(0, 1), b}, -1);
  EXPECT_EQ(out.dtype(), DType::Int64);
  EXPECT_EQ(to_doubles(out), (std::vector<double>{1, 3, 5, 2, 4, 6}));
  const Tensor h = random_in(DType::BFloat16, {3, 2}, 413);
  const Tensor twice = ops::concat(std::vector<Tensor>{h, h}, 0);
  EXPECT_EQ(twice.dtype(), DType::BFloat16);
  std::vector<double> expected = to_doubles(h);
  expected.insert(expected.end(), expected.begin(), expected.end());
  EXPECT_EQ(to_doubles(twice), expected);
}

TEST(OpsLayout, ConcatRejectsMismatches) {
  const Tensor a = random_tensor({2, 3}, 414);
  expect_error([&] { ops::concat(std::vector<Tensor>{a, random_tensor({3, 3}, 1)}, 1); },
               "concat: tensor 1 [3, 3] does not match tensor 0 [2, 3] outside dim 1");
  expect_error([&] { ops::concat(std::vector<Tensor>{a, random_tensor({2}, 1)}, 0); },
               "concat: tensor 1 [2] does not match");
  expect_error([&] { ops::concat(std::vector<Tensor>{a, a.to(DType::BFloat16)}, 0); },
               "concat: tensor 1 has dtype bfloat16 but tensor 0 has float32");
  expect_error([&] { ops::concat(std::vector<Tensor>{}, 0); }, "concat: no tensors");
  expect_error([&] { ops::concat(std::vector<Tensor>{a}, 2); }, "concat: dim 2 out of range");
}

TEST(OpsLayout, SplitIsTheInverseOfConcat) {
  const Tensor x = random_tensor({3, 10, 4}, 420);
  const std::vector<int64_t> sizes{2, 0, 7, 1};
  const std::vector<Tensor> parts = ops::split(x, sizes, 1);
  ASSERT_EQ(parts.size(), 4u);
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_EQ(parts[i].shape(), (Shape{3, sizes[i], 4}));
    // Core's is_contiguous() says false for any shape holding a 0, so the empty part
    // is only checked for its shape.
    if (sizes[i] > 0) expect_new_contiguous(parts[i], x);
  }
  EXPECT_EQ(to_doubles(ops::concat(parts, 1)), to_doubles(x));
  EXPECT_EQ(to_doubles(parts[2]), to_doubles(x.narrow(1, 2, 7)));
  const std::vector<int64_t> short_sizes{2, 7};
  expect_error([&] { ops::split(x, short_sizes, 1); },
               "split: sizes [2, 7] sum to 9 but dim 1 of x [3, 10, 4] has 10");
}

// ---- cast --------------------------------------------------------------------------

TEST(OpsLayout, CastRoundsToNearestEven) {
  const Tensor x = random_tensor({5, 13}, 430, -100.0f, 100.0f);
  const Tensor b = ops::cast(x, DType::BFloat16);
  ASSERT_EQ(b.dtype(), DType::BFloat16);
  const auto xs = x.to_float_vector();
  const auto* bits = b.data<uint16_t>();
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(bits[i], float_to_bf16_bits(xs[i]));
  EXPECT_EQ(to_doubles(ops::cast(b, DType::Float32)), to_doubles(b));
  EXPECT_EQ(ops::cast(x, DType::Float32).data_ptr(), x.data_ptr());  // no copy needed
  const Tensor column = x.narrow(1, 2, 1);
  const Tensor packed = ops::cast(column, DType::Float32);
  expect_new_contiguous(packed, column);
  EXPECT_EQ(to_doubles(packed), to_doubles(column));
  const Tensor strided = ops::cast(x.transpose(0, 1), DType::Float16);
  EXPECT_EQ(strided.shape(), (Shape{13, 5}));
  EXPECT_EQ(to_doubles(strided), to_doubles(x.transpose(0, 1).to(DType::Float16)));
  EXPECT_EQ(to_doubles(ops::cast(Tensor::from_vector<int64_t>({-3, 7}, {2}), DType::Float32)),
            (std::vector<double>{-3, 7}));
}

// ---- conv3d_patch ------------------------------------------------------------------

std::vector<double> conv3d_patch_reference(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const auto xs = to_doubles(x), ws = to_doubles(w);
  const auto bs = bias.defined() ? to_doubles(bias) : std::vector<double>();
  const int64_t batch = x.size(0), channels = x.size(1), frames = x.size(2), height = x.size(3),
                width = x.size(4);
  const int64_t out_channels = w.size(0), kt = w.size(2), kh = w.size(3), kw = w.size(4);
  const Shape out_shape{batch, out_channels, frames / kt, height / kh, width / kw};
  std::vector<double> out(shape_numel(out_shape));
  for (int64_t i = 0; i < static_cast<int64_t>(out.size()); ++i) {
    const auto idx = testing::unravel(i, out_shape);  // b, o, t, h, w
    double sum = bs.empty() ? 0.0 : bs[idx[1]];
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t a = 0; a < kt; ++a) {
        for (int64_t p = 0; p < kh; ++p) {
          for (int64_t q = 0; q < kw; ++q) {
            const int64_t xt = idx[2] * kt + a, xh = idx[3] * kh + p, xw = idx[4] * kw + q;
            sum += xs[(((idx[0] * channels + c) * frames + xt) * height + xh) * width + xw] *
                   ws[(((idx[1] * channels + c) * kt + a) * kh + p) * kw + q];
          }
        }
      }
    }
    out[i] = sum;
  }
  return out;
}

TEST(OpsConv3dPatch, MatchesReference) {
  struct Case {
    Shape x, weight;
    bool bias;
  };
  const Case cases[] = {{{2, 3, 4, 6, 10}, {5, 3, 2, 3, 5}, true},
                        {{1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}, true},
                        {{1, 16, 3, 8, 6}, {7, 16, 1, 2, 2}, false},
                        {{3, 2, 5, 7, 3}, {4, 2, 5, 7, 3}, true}};
  uint64_t seed = 440;
  for (const auto& c : cases) {
    const Tensor x = random_tensor(c.x, seed++), w = random_tensor(c.weight, seed++);
    const Tensor b = c.bias ? random_tensor({c.weight[0]}, seed++) : Tensor{};
    const Tensor out = ops::conv3d_patch(x, w, b);
    EXPECT_EQ(out.shape(), (Shape{c.x[0], c.weight[0], c.x[2] / c.weight[2], c.x[3] / c.weight[3],
                                  c.x[4] / c.weight[4]}));
    expect_close(out, conv3d_patch_reference(x, w, b), 1e-5);
  }
}

TEST(OpsConv3dPatch, LowPrecisionAndErrors) {
  const Tensor x = random_in(DType::BFloat16, {1, 4, 2, 6, 4}, 450);
  const Tensor w = random_in(DType::BFloat16, {9, 4, 1, 2, 2}, 451);
  const Tensor b = random_in(DType::BFloat16, {9}, 452);
  const Tensor out = ops::conv3d_patch(x, w, b);
  EXPECT_EQ(out.dtype(), DType::BFloat16);
  expect_rounded_from_float32(out, ops::conv3d_patch(x.to(DType::Float32), w.to(DType::Float32),
                                                     b.to(DType::Float32)));
  expect_error([&] { ops::conv3d_patch(random_tensor({1, 4, 2, 5, 4}, 1), random_tensor({9, 4, 1, 2, 2}, 2), {}); },
               "conv3d_patch: x [1, 4, 2, 5, 4] is not a whole number of [9, 4, 1, 2, 2] patches");
  expect_error([&] { ops::conv3d_patch(random_tensor({1, 3, 2, 6, 4}, 1), random_tensor({9, 4, 1, 2, 2}, 2), {}); },
               "conv3d_patch: x [1, 3, 2, 6, 4] and weight [9, 4, 1, 2, 2] disagree on channels");
  expect_error([&] { ops::conv3d_patch(random_tensor({1, 4, 2, 6, 4}, 1), random_tensor({9, 4, 1, 2, 2}, 2),
                                       random_tensor({8}, 3)); },
               "conv3d_patch: bias [8] must be [9]");
}

// ---- timestep_embedding ------------------------------------------------------------

// diffusers get_timestep_embedding, in double.
std::vector<double> timestep_reference(const std::vector<double>& t, int64_t dim, bool flip,
                                       double shift, double scale, double max_period) {
  const int64_t half = dim / 2;
  std::vector<double> out;
  for (double time : t) {
    std::vector<double> sines, cosines;
    for (int64_t k = 0; k < half; ++k) {
      const double angle = scale * time * std::exp(-std::log(max_period) * k / (half - shift));
      sines.push_back(std::sin(angle));
      cosines.push_back(std::cos(angle));
    }
    const auto& first = flip ? cosines : sines;
    const auto& second = flip ? sines : cosines;
    out.insert(out.end(), first.begin(), first.end());
    out.insert(out.end(), second.begin(), second.end());
    if (dim % 2 == 1) out.push_back(0.0);
  }
  return out;
}

TEST(OpsTimestepEmbedding, KnownValues) {
  // dim 4: frequencies exp(-ln(1e4) * k / 2) = 1 and 0.01.
  const Tensor e = ops::timestep_embedding(Tensor::from_vector<float>({1.0f}, {1}), 4, false, 0.0f);
  const auto v = to_doubles(e);
  EXPECT_EQ(e.shape(), (Shape{1, 4}));
  EXPECT_NEAR(v[0], std::sin(1.0), 1e-7);
  EXPECT_NEAR(v[1], std::sin(0.01), 1e-7);
  EXPECT_NEAR(v[2], std::cos(1.0), 1e-7);
  EXPECT_NEAR(v[3], std::cos(0.01), 1e-7);
}

TEST(OpsTimestepEmbedding, MatchesDiffusers) {
  const std::vector<float> times{0.0f, 1.0f, 999.0f, 500.5f, 0.25f};
  const Tensor t = Tensor::from_vector(times, {5});
  const std::vector<double> td(times.begin(), times.end());
  struct Case {
    int64_t dim;
    bool flip;
    float shift, scale, max_period;
  };
  const Case cases[] = {{256, true, 0.0f, 1.0f, 10000.0f}, {256, false, 1.0f, 1.0f, 10000.0f},
                        {7, true, 1.0f, 1.0f, 10000.0f},   {33, false, 0.0f, 2.5f, 500.0f},
                        {1, true, 0.0f, 1.0f, 10000.0f}};
  for (const auto& c : cases) {
    const Tensor e = ops::timestep_embedding(t, c.dim, c.flip, c.shift, c.scale, c.max_period);
    EXPECT_EQ(e.shape(), (Shape{5, c.dim}));
    EXPECT_EQ(e.dtype(), DType::Float32);
    // float32 angles up to ~2500 carry ~1e-4 absolute error into sin / cos.
    expect_close(e, timestep_reference(td, c.dim, c.flip, c.shift, c.scale, c.max_period), 3e-4);
  }
}

TEST(OpsTimestepEmbedding, IntegerAndLowPrecisionTimesteps) {
  const Tensor ints = Tensor::from_vector<int64_t>({3, 781}, {2});
  const Tensor floats = Tensor::from_vector<float>({3.0f, 781.0f}, {2});
  EXPECT_EQ(to_doubles(ops::timestep_embedding(ints, 64, true, 0.0f)),
            to_doubles(ops::timestep_embedding(floats, 64, true, 0.0f)));
  const Tensor half = floats.to(DType::BFloat16);  // 3 and 780: bf16 keeps 8 bits
  EXPECT_EQ(to_doubles(ops::timestep_embedding(half, 64, true, 0.0f)),
            to_doubles(ops::timestep_embedding(half.to(DType::Float32), 64, true, 0.0f)));
  expect_error([&] { ops::timestep_embedding(random_tensor({2, 1}, 1), 8, true, 0.0f); },
               "timestep_embedding: t [2, 1] must be [N]");
  expect_error([&] { ops::timestep_embedding(floats, 0, true, 0.0f); },
               "timestep_embedding: dim must be positive");
}

}  // namespace
}  // namespace fastdit
