// linear, norms, activations, broadcasting elementwise ops and softmax against plain
// double-precision references. Tolerances are on max |out - ref| relative to
// max(1, max |ref|); bfloat16 / float16 results must be the float32 result rounded,
// within one ulp.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <numbers>
#include <string>

#include "backends/row_layout.h"
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

// ---- linear ------------------------------------------------------------------------

std::vector<double> linear_reference(const Tensor& x, const Tensor& w, const Tensor& b) {
  const auto xs = to_doubles(x), ws = to_doubles(w);
  const auto bs = b.defined() ? to_doubles(b) : std::vector<double>();
  const int64_t n = w.size(0), k = w.size(1), m = x.numel() / k;
  std::vector<double> y(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = bs.empty() ? 0.0 : bs[j];
      for (int64_t c = 0; c < k; ++c) sum += xs[i * k + c] * ws[j * k + c];
      y[i * n + j] = sum;
    }
  }
  return y;
}

struct LinearCase {
  Shape x, weight;
  bool bias;
};

TEST(OpsLinear, MatchesReferenceOnAwkwardShapes) {
  const LinearCase cases[] = {{{2, 7, 33}, {17, 33}, true}, {{1, 1}, {1, 1}, true},
                              {{5, 64}, {3, 64}, false},   {{3}, {4, 3}, true},
                              {{2, 3, 5, 129}, {31, 129}, true}};
  uint64_t seed = 1;
  for (const auto& c : cases) {
    const Tensor x = random_tensor(c.x, seed++), w = random_tensor(c.weight, seed++);
    const Tensor b = c.bias ? random_tensor({c.weight[0]}, seed++) : Tensor{};
    const Tensor y = ops::linear(x, w, b);
    Shape expected = c.x;
    expected.back() = c.weight[0];
    EXPECT_EQ(y.shape(), expected);
    EXPECT_EQ(y.dtype(), DType::Float32);
    expect_close(y, linear_reference(x, w, b), 1e-5);
  }
}

TEST(OpsLinear, NonContiguousInput) {
  const Tensor x = random_tensor({9, 4}, 11).transpose(0, 1);  // [4, 9], strided
  const Tensor w = random_tensor({6, 9}, 12), b = random_tensor({6}, 13);
  ASSERT_FALSE(x.is_contiguous());
  expect_close(ops::linear(x, w, b), linear_reference(x.contiguous(), w, b), 1e-5);
}

TEST(OpsLinear, BFloat16IsFloat32Rounded) {
  const Tensor x = random_in(DType::BFloat16, {3, 5, 40}, 21);
  const Tensor w = random_in(DType::BFloat16, {19, 40}, 22);
  const Tensor b = random_in(DType::BFloat16, {19}, 23);
  const Tensor y = ops::linear(x, w, b);
  EXPECT_EQ(y.dtype(), DType::BFloat16);
  expect_rounded_from_float32(
      y, ops::linear(x.to(DType::Float32), w.to(DType::Float32), b.to(DType::Float32)));
  expect_close(y, linear_reference(x, w, b), 1e-2);
}

TEST(OpsLinear, RejectsBadArguments) {
  const Tensor x = random_tensor({2, 7, 33}, 1);
  expect_error([&] { ops::linear(x, random_tensor({16, 32}, 2)); },
               "linear: x [2, 7, 33] and weight [16, 32] disagree on K");
  expect_error([&] { ops::linear(x, random_tensor({16, 33}, 2), random_tensor({15}, 3)); },
               "linear: bias [15] must be [16]");
  expect_error([&] { ops::linear(x, random_tensor({1, 16, 33}, 2)); }, "weight [1, 16, 33] must have rank 2");
  expect_error([&] { ops::linear(x, Tensor{}); }, "linear: weight is undefined");
  expect_error([&] { ops::linear(x.to(DType::Int32), random_tensor({16, 33}, 2)); },
               "linear: x has dtype int32");
  expect_error([&] { ops::linear(x.to(DType::Float64), random_tensor({16, 33}, 2)); },
               "linear: x has dtype float64");
}

// ---- norms -------------------------------------------------------------------------

std::vector<double> norm_reference(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                                   bool subtract_mean) {
  const auto xs = to_doubles(x);
  const auto ws = w.defined() ? to_doubles(w) : std::vector<double>();
  const auto bs = b.defined() ? to_doubles(b) : std::vector<double>();
  const int64_t d = x.size(-1), rows = x.numel() / d;
  std::vector<double> y(xs.size());
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = xs.data() + r * d;
    double mean = 0, second = 0;
    if (subtract_mean) {
      for (int64_t j = 0; j < d; ++j) mean += row[j] / d;
    }
    for (int64_t j = 0; j < d; ++j) second += (row[j] - mean) * (row[j] - mean) / d;
    for (int64_t j = 0; j < d; ++j) {
      double v = (row[j] - mean) / std::sqrt(second + eps);
      if (!ws.empty()) v *= ws[j];
      if (!bs.empty()) v += bs[j];
      y[r * d + j] = v;
    }
  }
  return y;
}

TEST(OpsNorm, LayerNormAffineVariants) {
  const Tensor x = random_tensor({3, 5, 37}, 31, -2.0f, 3.0f);
  const Tensor w = random_tensor({37}, 32), b = random_tensor({37}, 33);
  for (const auto& [weight, bias] : {std::pair{w, b}, std::pair{w, Tensor{}},
                                     std::pair{Tensor{}, b}, std::pair{Tensor{}, Tensor{}}}) {
    const Tensor y = ops::layer_norm(x, weight, bias, 1e-5f);
    EXPECT_EQ(y.shape(), x.shape());
    expect_close(y, norm_reference(x, weight, bias, 1e-5, true), 1e-5);
  }
}

TEST(OpsNorm, LayerNormSingleElementRowsAndLargeEps) {
  const Tensor x = random_tensor({4, 1}, 34), b = random_tensor({1}, 35);
  expect_close(ops::layer_norm(x, Tensor{}, b, 1e-6f), norm_reference(x, Tensor{}, b, 1e-6, true),
               1e-6);
  const Tensor wide = random_tensor({2, 301}, 36, 0.0f, 0.01f);
  expect_close(ops::layer_norm(wide, Tensor{}, Tensor{}, 0.5f),
               norm_reference(wide, Tensor{}, Tensor{}, 0.5, true), 1e-6);
}

TEST(OpsNorm, RmsNorm) {
  const Tensor x = random_tensor({2, 3, 19}, 41, -3.0f, 1.0f), w = random_tensor({19}, 42);
  expect_close(ops::rms_norm(x, w, 1e-6f), norm_reference(x, w, Tensor{}, 1e-6, false), 1e-5);
  expect_close(ops::rms_norm(x, Tensor{}, 1e-2f),
               norm_reference(x, Tensor{}, Tensor{}, 1e-2, false), 1e-5);
}

// The row layout the norm kernels read in place: contiguous rows, or a column range of a
// wider tensor; rows that are not evenly spaced or not contiguous are not one.
TEST(OpsNorm, EvenRowStrideNamesTheLayoutsReadInPlace) {
  const Tensor x = random_tensor({2, 3, 12}, 1);
  EXPECT_EQ(even_row_stride(x), 12);
  EXPECT_EQ(even_row_stride(x.narrow(-1, 4, 4)), 12);        // the k columns of a q|k|v row
  EXPECT_EQ(even_row_stride(x.narrow(0, 1, 1).narrow(-1, 8, 4)), 12);
  EXPECT_EQ(even_row_stride(x.narrow(1, 1, 1).narrow(-1, 0, 4)), 36);  // one row per item
  EXPECT_EQ(even_row_stride(x.narrow(1, 0, 2)), std::nullopt);  // rows 0, 1, then 3
  EXPECT_EQ(even_row_stride(x.transpose(1, 2)), std::nullopt);  // a row is not contiguous
  EXPECT_EQ(even_row_stride(Tensor::scalar(1.0f)), std::nullopt);
}

// rms_norm of a column range is the norm of its contiguous copy, in every dtype.
TEST(OpsNorm, RmsNormOfAColumnRangeIsTheNormOfItsCopy) {
  for (DType dtype : {DType::Float32, DType::BFloat16, DType::Float16}) {
    const Tensor qkv = ops::cast(random_tensor({2, 5, 3 * 16}, 2), dtype);
    const Tensor weight = random_tensor({16}, 3);
    for (int64_t part = 0; part < 3; ++part) {
      const Tensor columns = qkv.narrow(-1, part * 16, 16);
      ASSERT_FALSE(columns.is_contiguous());
      EXPECT_EQ(testing::max_abs_diff(ops::rms_norm(columns, weight, 1e-6f),
                                      ops::rms_norm(columns.contiguous(), weight, 1e-6f)),
                0.0)
          << dtype_name(dtype) << " part " << part;
    }
  }
}

TEST(OpsNorm, LowPrecisionIsFloat32Rounded) {
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    const Tensor x = random_in(dtype, {6, 48}, 43, -4.0f, 4.0f);
    const Tensor w = random_tensor({48}, 44), b = random_tensor({48}, 45);  // float32 params
    const Tensor y = ops::layer_norm(x, w, b, 1e-6f);
    EXPECT_EQ(y.dtype(), dtype);
    expect_rounded_from_float32(y, ops::layer_norm(x.to(DType::Float32), w, b, 1e-6f));
    const Tensor r = ops::rms_norm(x, w.to(dtype), 1e-6f);
    expect_rounded_from_float32(r, ops::rms_norm(x.to(DType::Float32), w.to(dtype).to(DType::Float32), 1e-6f));
  }
}

TEST(OpsNorm, RejectsBadArguments) {
  const Tensor x = random_tensor({2, 8}, 46);
  expect_error([&] { ops::layer_norm(x, random_tensor({7}, 1), Tensor{}, 1e-6f); },
               "layer_norm: weight [7] must be [8]");
  expect_error([&] { ops::layer_norm(x, Tensor{}, random_tensor({2, 8}, 1), 1e-6f); },
               "layer_norm: bias [2, 8] must be [8]");
  expect_error([&] { ops::rms_norm(Tensor::scalar(1.0f), Tensor{}, 1e-6f); },
               "rms_norm: x must have rank >= 1");
}

TEST(OpsNorm, AddLayerNormIsTheSeparateOps) {
  for (DType dtype : {DType::Float32, DType::BFloat16}) {
    const Tensor residual = random_in(dtype, {2, 9, 40}, 47, -2.0f, 2.0f), x = random_in(dtype, {2, 9, 40}, 48);
    const Tensor gate = random_tensor({2, 1, 40}, 49), w = random_tensor({40}, 50), b = random_tensor({40}, 51);
    const Tensor shift = random_tensor({2, 9, 40}, 52), scale = random_tensor({2, 1, 40}, 53);
    // Gated, affine: the first residual add and cross-attention norm of a Wan block.
    const ops::AddNorm gated = ops::add_layer_norm(residual, x, gate, w, b, {}, {}, 1e-6f);
    const Tensor sum = ops::gated_add(residual, x, gate, dtype);
    EXPECT_EQ(gated.sum.dtype(), dtype);
    EXPECT_EQ(gated.normed.dtype(), dtype);
    EXPECT_EQ(testing::max_abs_diff(gated.sum, sum), 0.0);
    EXPECT_EQ(testing::max_abs_diff(gated.normed, ops::layer_norm(sum, w, b, 1e-6f)), 0.0);
    // Ungated, modulated: the second residual add and the FFN's norm.
    const ops::AddNorm modulated = ops::add_layer_norm(residual, x, {}, {}, {}, shift, scale, 1e-6f);
    const Tensor plain = ops::add(residual, x);
    EXPECT_EQ(testing::max_abs_diff(modulated.sum, plain), 0.0);
    EXPECT_EQ(testing::max_abs_diff(modulated.normed, ops::layer_norm_modulate(plain, shift, scale, 1e-6f, dtype)),
              0.0);
  }
  // The sum is rounded once into residual's dtype, whatever x's.
  const Tensor residual = random_in(DType::BFloat16, {3, 16}, 54), x = random_tensor({3, 16}, 55);
  const ops::AddNorm mixed = ops::add_layer_norm(residual, x, {}, {}, {}, {}, {}, 1e-6f);
  EXPECT_EQ(mixed.sum.dtype(), DType::BFloat16);
  EXPECT_EQ(testing::max_abs_diff(mixed.sum, ops::add(residual, x).to(DType::BFloat16)), 0.0);
}

TEST(OpsNorm, AddLayerNormRejectsBadArguments) {
  const Tensor r = random_tensor({2, 8}, 56), s = random_tensor({2, 8}, 57), w = random_tensor({8}, 58);
  expect_error([&] { ops::add_layer_norm(r, r, {}, {}, {}, s, {}, 1e-6f); },
               "add_layer_norm: shift and scale come together, and not with weight or bias");
  expect_error([&] { ops::add_layer_norm(r, r, {}, w, {}, s, s, 1e-6f); },
               "add_layer_norm: shift and scale come together, and not with weight or bias");
  expect_error([&] { ops::add_layer_norm(r, random_tensor({3, 2, 8}, 1), {}, {}, {}, {}, {}, 1e-6f); },
               "must broadcast to residual [2, 8]");
  expect_error([&] { ops::add_layer_norm(r, r, {}, random_tensor({7}, 1), {}, {}, {}, 1e-6f); },
               "add_layer_norm: weight [7] must be [8]");
}

// ---- activations -------------------------------------------------------------------

double gelu_exact(double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }
double gelu_tanh(double v) {
  return 0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
}
double silu(double v) { return v / (1 + std::exp(-v)); }
double sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

std::vector<double> map(const Tensor& x, double (*fn)(double)) {
  std::vector<double> y = to_doubles(x);
  for (double& v : y) v = fn(v);
  return y;
}

TEST(OpsActivation, MatchReference) {
  const Tensor x = random_tensor({3, 101}, 51, -8.0f, 8.0f);
  expect_close(ops::gelu(x), map(x, gelu_exact), 1e-6);
  expect_close(ops::gelu(x, ops::GeluApprox::Tanh), map(x, gelu_tanh), 1e-6);
  expect_close(ops::silu(x), map(x, silu), 1e-6);
  expect_close(ops::sigmoid(x), map(x, sigmoid), 1e-6);
  expect_close(ops::scale(x, -0.375f), [&] {
    std::vector<double> y = to_doubles(x);
    for (double& v : y) v *= -0.375;
    return y;
  }(), 1e-7);
}

TEST(OpsActivation, LowPrecisionIsFloat32Rounded) {
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    const Tensor x = random_in(dtype, {7, 33}, 52, -6.0f, 6.0f);
    const Tensor x32 = x.to(DType::Float32);
    expect_rounded_from_float32(ops::gelu(x), ops::gelu(x32));
    expect_rounded_from_float32(ops::gelu(x, ops::GeluApprox::Tanh),
                                ops::gelu(x32, ops::GeluApprox::Tanh));
    expect_rounded_from_float32(ops::silu(x), ops::silu(x32));
    expect_rounded_from_float32(ops::sigmoid(x), ops::sigmoid(x32));
    expect_rounded_from_float32(ops::scale(x, 3.0f), ops::scale(x32, 3.0f));
    EXPECT_EQ(ops::silu(x).dtype(), dtype);
  }
}

TEST(OpsActivation, CosSin) {
  const Tensor x = random_tensor({4, 37}, 54, -20.0f, 20.0f);
  expect_close(ops::cos(x), map(x, [](double v) { return std::cos(v); }), 1e-6);
  expect_close(ops::sin(x), map(x, [](double v) { return std::sin(v); }), 1e-6);
  const Tensor b = x.to(DType::BFloat16);
  expect_rounded_from_float32(ops::cos(b), ops::cos(b.to(DType::Float32)));
}

// value · silu(gate) over the halves of the last dim; in low precision silu(gate) is rounded
// to the dtype before the product, as diffusers' SwiGLU in that dtype computes it.
TEST(OpsActivation, SwiGLU) {
  const Tensor x = random_tensor({3, 5, 2 * 19}, 55, -6.0f, 6.0f);
  const auto xs = to_doubles(x);
  std::vector<double> expected;
  for (int64_t row = 0; row < 15; ++row)
    for (int64_t i = 0; i < 19; ++i) expected.push_back(xs[row * 38 + i] * silu(xs[row * 38 + 19 + i]));
  const Tensor y = ops::swiglu(x);
  EXPECT_EQ(y.shape(), (Shape{3, 5, 19}));
  expect_close(y, expected, 1e-6);
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    const Tensor low = x.to(dtype);
    const Tensor value = low.narrow(-1, 0, 19), gate = low.narrow(-1, 19, 19);
    const Tensor two_ops = ops::mul(value, ops::silu(gate));
    EXPECT_EQ(testing::max_abs_diff(ops::swiglu(low), two_ops), 0.0) << dtype_name(dtype);
  }
  expect_error([&] { ops::swiglu(random_tensor({2, 7}, 1)); }, "swiglu: x [2, 7] must have an even last dim");
}

// Rounding::EachStep: the normalised row rounded to the dtype, then the weight multiply (a
// reference's `norm(x.float()).type_as(x) * weight`), equal bit for bit to the two ops; in
// float32 equal to the one-rounding form; a weight of another dtype is refused.
TEST(OpsNorm, RmsNormRoundedBeforeWeight) {
  const Tensor x = random_tensor({4, 6, 128}, 57, -3.0f, 5.0f);
  const Tensor w = random_tensor({128}, 58, 0.5f, 2.0f);
  EXPECT_EQ(testing::max_abs_diff(ops::rms_norm(x, w, 1e-6f, ops::Rounding::EachStep), ops::rms_norm(x, w, 1e-6f)),
            0.0);
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    const Tensor xl = x.to(dtype), wl = w.to(dtype);
    const Tensor two_ops = ops::mul(ops::rms_norm(xl, {}, 1e-6f), wl);
    const Tensor fused = ops::rms_norm(xl, wl, 1e-6f, ops::Rounding::EachStep);
    EXPECT_EQ(fused.dtype(), dtype);
    EXPECT_EQ(testing::max_abs_diff(fused, two_ops), 0.0) << dtype_name(dtype);
    // The one-rounding form differs somewhere (else the test would not tell them apart).
    EXPECT_GT(testing::max_abs_diff(ops::rms_norm(xl, wl, 1e-6f), two_ops), 0.0) << dtype_name(dtype);
  }
  expect_error([&] { ops::rms_norm(x.to(DType::BFloat16), w, 1e-6f, ops::Rounding::EachStep); },
               "rms_norm: Rounding::EachStep needs the weight in x's dtype (bfloat16), got float32");
}

// rms_norm_modulate with Rounding::EachStep is the norm in x's dtype then modulate's rounded
// steps, bit for bit; in float32 the one-rounding form; another out dtype is refused.
TEST(OpsNorm, RmsNormModulateEachStepIsTheTwoOps) {
  const Tensor x = random_tensor({2, 9, 96}, 61, -3.0f, 4.0f);
  const Tensor shift = random_tensor({2, 1, 96}, 62), scale = random_tensor({2, 1, 96}, 63);
  EXPECT_EQ(testing::max_abs_diff(ops::rms_norm_modulate(x, {}, shift, scale, 1e-6f, DType::Float32, ops::Rounding::EachStep),
                                  ops::rms_norm_modulate(x, {}, shift, scale, 1e-6f, DType::Float32)),
            0.0);
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    const Tensor xl = x.to(dtype), sl = shift.to(dtype), cl = scale.to(dtype);
    const Tensor two_ops = ops::modulate(ops::rms_norm(xl, {}, 1e-6f), sl, cl, dtype, ops::Rounding::EachStep);
    const Tensor fused = ops::rms_norm_modulate(xl, {}, sl, cl, 1e-6f, dtype, ops::Rounding::EachStep);
    EXPECT_EQ(testing::max_abs_diff(fused, two_ops), 0.0) << dtype_name(dtype);
    EXPECT_GT(testing::max_abs_diff(ops::rms_norm_modulate(xl, {}, sl, cl, 1e-6f, dtype), two_ops), 0.0);
  }
  expect_error([&] { ops::rms_norm_modulate(x.to(DType::BFloat16), {}, shift, scale, 1e-6f, DType::Float32, ops::Rounding::EachStep); },
               "rms_norm_modulate: Rounding::EachStep writes x's dtype (bfloat16), not float32");
}

// add_layer_norm with Rounding::EachStep is gated_add's and modulate's each-step forms around
// the norm, bit for bit.
TEST(OpsNorm, AddLayerNormEachStepIsTheSeparateOps) {
  const Tensor residual = random_tensor({2, 7, 64}, 71, -3.0f, 3.0f).to(DType::BFloat16);
  const Tensor x = random_tensor({2, 7, 64}, 72).to(DType::BFloat16);
  const Tensor gate = random_tensor({2, 1, 64}, 73).to(DType::BFloat16);
  const Tensor shift = random_tensor({2, 1, 64}, 74).to(DType::BFloat16), scale = random_tensor({2, 1, 64}, 75).to(DType::BFloat16);
  const auto each = ops::Rounding::EachStep;
  for (ops::NormKind kind : {ops::NormKind::Layer, ops::NormKind::Rms}) {
    const bool rms = kind == ops::NormKind::Rms;
    const Tensor sum = ops::gated_add(residual, x, gate, DType::BFloat16, each);
    const Tensor norm = rms ? ops::rms_norm(sum, {}, 1e-6f) : ops::layer_norm(sum, {}, {}, 1e-6f);
    const ops::AddNorm plain = ops::add_layer_norm(residual, x, gate, {}, {}, {}, {}, 1e-6f, kind, each);
    EXPECT_EQ(testing::max_abs_diff(plain.sum, sum), 0.0);
    EXPECT_EQ(testing::max_abs_diff(plain.normed, norm), 0.0);
    const ops::AddNorm modulated = ops::add_layer_norm(residual, x, gate, {}, {}, shift, scale, 1e-6f, kind, each);
    EXPECT_EQ(testing::max_abs_diff(modulated.normed, ops::modulate(norm, shift, scale, DType::BFloat16, each)), 0.0);
    // The gated sum differs from the one-rounding form somewhere.
    EXPECT_GT(testing::max_abs_diff(ops::add_layer_norm(residual, x, gate, {}, {}, {}, {}, 1e-6f, kind).sum, sum), 0.0);
  }
}

TEST(OpsActivation, NonContiguousAndScalar) {
  const Tensor x = random_tensor({5, 3}, 53).transpose(0, 1);
  expect_close(ops::silu(x), map(x.contiguous(), silu), 1e-6);
  const Tensor s = ops::gelu(Tensor::scalar(1.5f));
  EXPECT_EQ(s.dim(), 0);
  EXPECT_NEAR(s.item(), gelu_exact(1.5), 1e-6);
}

// ---- broadcasting elementwise ------------------------------------------------------

// out[i] = fn(inputs broadcast to `shape` at i).
std::vector<double> broadcast_reference(const std::vector<Tensor>& inputs, const Shape& shape,
                                        const std::function<double(const std::vector<double>&)>& fn) {
  std::vector<std::vector<double>> values;
  for (const Tensor& t : inputs) values.push_back(to_doubles(t));
  std::vector<double> y(shape_numel(shape));
  std::vector<double> args(inputs.size());
  for (int64_t i = 0; i < static_cast<int64_t>(y.size()); ++i) {
    const auto index = testing::unravel(i, shape);
    for (size_t k = 0; k < inputs.size(); ++k) {
      args[k] = values[k][testing::broadcast_source(index, inputs[k].shape())];
    }
    y[i] = fn(args);
  }
  return y;
}

struct BroadcastCase {
  Shape a, b, out;
};

const BroadcastCase kBroadcastCases[] = {
    {{2, 3, 5}, {5}, {2, 3, 5}},       {{4, 1, 3}, {1, 6, 1}, {4, 6, 3}},
    {{}, {2, 2}, {2, 2}},              {{7, 1}, {1}, {7, 1}},
    {{1}, {3, 1, 1}, {3, 1, 1}},       {{2, 3, 5}, {2, 3, 5}, {2, 3, 5}},
    {{2, 1, 13}, {2, 11, 1}, {2, 11, 13}}, {{3, 0, 2}, {2}, {3, 0, 2}},
};

TEST(OpsElementwise, AddSubMulBroadcast) {
  uint64_t seed = 61;
  for (const auto& c : kBroadcastCases) {
    const Tensor a = random_tensor(c.a, seed++, -4.0f, 4.0f), b = random_tensor(c.b, seed++, -4.0f, 4.0f);
    const Tensor sum = ops::add(a, b), difference = ops::sub(a, b), product = ops::mul(a, b);
    EXPECT_EQ(sum.shape(), c.out);
    EXPECT_EQ(product.shape(), c.out);
    expect_close(sum, broadcast_reference({a, b}, c.out, [](auto& v) { return v[0] + v[1]; }), 1e-6);
    expect_close(difference, broadcast_reference({a, b}, c.out, [](auto& v) { return v[0] - v[1]; }), 1e-6);
    expect_close(product, broadcast_reference({a, b}, c.out, [](auto& v) { return v[0] * v[1]; }), 1e-6);
    // Operand order must not matter for the shape.
    EXPECT_EQ(ops::add(b, a).shape(), c.out);
  }
}

TEST(OpsElementwise, ClampKeepsTheDtypeAndNaN) {
  const Tensor x = Tensor::from_vector<float>({-7e4f, -3.0f, 0.5f, 65504.0f, 1e5f, NAN}, {2, 3});
  const auto out = ops::clamp(x, -65504.0f, 65504.0f).to_float_vector();
  EXPECT_EQ(out[0], -65504.0f);
  EXPECT_EQ(out[1], -3.0f);
  EXPECT_EQ(out[2], 0.5f);
  EXPECT_EQ(out[3], 65504.0f);
  EXPECT_EQ(out[4], 65504.0f);
  EXPECT_TRUE(std::isnan(out[5]));
  const Tensor half = ops::clamp(ops::cast(x, DType::Float16), -1.0f, 1.0f);
  EXPECT_EQ(half.dtype(), DType::Float16);
  EXPECT_EQ(half.to(DType::Float32).to_float_vector()[0], -1.0f);
  EXPECT_THROW(ops::clamp(x, 1.0f, -1.0f), Error);
}

TEST(OpsElementwise, ModulateAndGatedAdd) {
  const Tensor x = random_tensor({2, 9, 16}, 71), shift = random_tensor({2, 1, 16}, 72);
  const Tensor scale = random_tensor({2, 1, 16}, 73), gate = random_tensor({16}, 74);
  expect_close(ops::modulate(x, shift, scale),
               broadcast_reference({x, shift, scale}, x.shape(),
                                   [](auto& v) { return v[0] * (1 + v[2]) + v[1]; }),
               1e-6);
  const Tensor residual = random_tensor({2, 9, 16}, 75);
  expect_close(ops::gated_add(residual, x, gate),
               broadcast_reference({residual, x, gate}, x.shape(),
                                   [](auto& v) { return v[0] + v[1] * v[2]; }),
               1e-6);
  // The residual itself may broadcast too: the output takes the joint shape.
  const Tensor y = ops::gated_add(random_tensor({16}, 76), x, gate);
  EXPECT_EQ(y.shape(), x.shape());
}

TEST(OpsElementwise, GatedAddInPlace) {
  for (DType dtype : {DType::Float32, DType::BFloat16}) {
    const Tensor residual = random_in(dtype, {2, 9, 16}, 77), x = random_in(dtype, {2, 9, 16}, 78);
    const Tensor gate = random_tensor({2, 1, 16}, 79);
    Tensor target = residual.clone();
    ops::gated_add_(target, x, gate);
    EXPECT_EQ(testing::max_abs_diff(target, ops::gated_add(residual, x, gate, dtype)), 0.0);
    // A contiguous view of some rows: those rows change, the others keep their values.
    Tensor whole = residual.clone();
    Tensor second = whole.narrow(0, 1, 1);
    ops::gated_add_(second, x.narrow(0, 1, 1), gate.narrow(0, 1, 1));
    EXPECT_EQ(testing::max_abs_diff(whole.narrow(0, 0, 1).contiguous(), residual.narrow(0, 0, 1).contiguous()), 0.0);
    EXPECT_EQ(testing::max_abs_diff(whole.narrow(0, 1, 1).contiguous(),
                                    ops::gated_add(residual, x, gate, dtype).narrow(0, 1, 1).contiguous()),
              0.0);
  }
  Tensor small = random_tensor({16}, 80);
  const Tensor x = random_tensor({2, 16}, 81);
  expect_error([&] { ops::gated_add_(small, x, x); },
               "gated_add_: x [2, 16] and gate [2, 16] must broadcast to residual [16]");
  Tensor strided = random_tensor({16, 2}, 82).transpose(0, 1);
  expect_error([&] { ops::gated_add_(strided, x, x); }, "gated_add_: residual");
}

TEST(OpsElementwise, ResultDtypeRule) {
  const Tensor f32 = random_tensor({3, 4}, 81);
  const Tensor bf16 = random_in(DType::BFloat16, {3, 4}, 82);
  const Tensor f16 = random_in(DType::Float16, {4}, 83);
  EXPECT_EQ(ops::add(bf16, bf16).dtype(), DType::BFloat16);
  EXPECT_EQ(ops::mul(f16, f16).dtype(), DType::Float16);
  EXPECT_EQ(ops::add(bf16, f32).dtype(), DType::Float32);
  EXPECT_EQ(ops::sub(bf16, f16).dtype(), DType::Float32);
  EXPECT_EQ(ops::modulate(bf16, f32, f32).dtype(), DType::Float32);
  EXPECT_EQ(ops::gated_add(bf16, bf16, bf16).dtype(), DType::BFloat16);
  // Mixed inputs compute exactly as their float32 values would.
  EXPECT_EQ(testing::max_abs_diff(ops::add(bf16, f32), ops::add(bf16.to(DType::Float32), f32)), 0.0);
}

TEST(OpsElementwise, LowPrecisionIsFloat32Rounded) {
  const auto f32 = [](const Tensor& t) { return t.to(DType::Float32); };
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    const Tensor x = random_in(dtype, {4, 5, 24}, 91, -3.0f, 3.0f);
    const Tensor shift = random_in(dtype, {4, 1, 24}, 92), scale = random_in(dtype, {4, 1, 24}, 93);
    const Tensor gate = random_in(dtype, {24}, 94), other = random_in(dtype, {5, 1}, 95);
    expect_rounded_from_float32(ops::add(x, other), ops::add(f32(x), f32(other)));
    expect_rounded_from_float32(ops::sub(x, other), ops::sub(f32(x), f32(other)));
    expect_rounded_from_float32(ops::mul(x, other), ops::mul(f32(x), f32(other)));
    expect_rounded_from_float32(ops::modulate(x, shift, scale),
                                ops::modulate(f32(x), f32(shift), f32(scale)));
    expect_rounded_from_float32(ops::gated_add(x, x, gate), ops::gated_add(f32(x), f32(x), f32(gate)));
  }
}

TEST(OpsElementwise, NonContiguousInputs) {
  const Tensor a = random_tensor({6, 4}, 96).transpose(0, 1);       // [4, 6] strided
  const Tensor b = random_tensor({4, 12}, 97).narrow(1, 3, 6);      // [4, 6] strided
  expect_close(ops::mul(a, b),
               broadcast_reference({a.contiguous(), b.contiguous()}, {4, 6},
                                   [](auto& v) { return v[0] * v[1]; }),
               1e-6);
}

TEST(OpsElementwise, RejectsBadArguments) {
  const Tensor a = random_tensor({2, 3}, 98);
  expect_error([&] { ops::add(a, random_tensor({4}, 1)); },
               "add: shapes do not broadcast: a [2, 3], b [4]");
  expect_error([&] { ops::modulate(a, random_tensor({3}, 1), random_tensor({2, 2}, 2)); },
               "modulate: shapes do not broadcast: x [2, 3], shift [3], scale [2, 2]");
  expect_error([&] { ops::gated_add(a, a, Tensor{}); }, "gated_add: gate is undefined");
  expect_error([&] { ops::mul(a, a.to(DType::Int64)); }, "mul: b has dtype int64");
  // A tensor that claims to live on a GPU: the device check fires before any kernel.
  auto storage = std::make_shared<std::vector<float>>(6);
  const Tensor elsewhere = Tensor::from_blob(storage->data(), {2, 3}, DType::Float32,
                                             Device::cuda(0), storage);
  expect_error([&] { ops::sub(a, elsewhere); }, "sub: b is on cuda:0 but a is on cpu");
}

// ---- softmax -----------------------------------------------------------------------

std::vector<double> softmax_reference(const Tensor& x, int64_t dim) {
  const auto xs = to_doubles(x);
  const Shape& shape = x.shape();
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= shape[d];
  const int64_t n = shape[dim], outer = x.numel() / (n * inner);
  std::vector<double> y(xs.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t base = o * n * inner + i;
      double max = -INFINITY, sum = 0;
      for (int64_t j = 0; j < n; ++j) max = std::max(max, xs[base + j * inner]);
      for (int64_t j = 0; j < n; ++j) sum += std::exp(xs[base + j * inner] - max);
      for (int64_t j = 0; j < n; ++j) y[base + j * inner] = std::exp(xs[base + j * inner] - max) / sum;
    }
  }
  return y;
}

TEST(OpsSoftmax, EveryDimAndLargeLogits) {
  const Tensor x = random_tensor({3, 7, 1, 11}, 101, -60.0f, 60.0f);
  for (int64_t dim : {0, 1, 2, 3}) {
    expect_close(ops::softmax(x, dim), softmax_reference(x, dim), 1e-6);
  }
  expect_close(ops::softmax(x, -3), softmax_reference(x, 1), 1e-6);
  const std::vector<double> ones = to_doubles(ops::softmax(x, 2));
  for (double v : ones) EXPECT_EQ(v, 1.0);
}

TEST(OpsSoftmax, LowPrecisionAndErrors) {
  const Tensor x = random_in(DType::BFloat16, {5, 37}, 102, -5.0f, 5.0f);
  expect_rounded_from_float32(ops::softmax(x), ops::softmax(x.to(DType::Float32)));
  expect_error([&] { ops::softmax(x, 2); }, "softmax: dim 2 out of range for [5, 37]");
}

}  // namespace
}  // namespace fastdit
