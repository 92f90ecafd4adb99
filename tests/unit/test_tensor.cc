#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/half.h"
#include "core/tensor.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

// Reference rounding in double: nearest representable value, ties to even mantissa.
double round_to_format(double x, int mantissa_bits, int min_exp, double max_finite) {
  if (x == 0 || std::isnan(x)) return x;
  int e;
  std::frexp(x, &e);  // x = m * 2^e, m in [0.5, 1)
  const int exp = std::max(e - 1, min_exp);
  const double quantum = std::ldexp(1.0, exp - mantissa_bits);
  const double scaled = x / quantum;
  double r = std::nearbyint(scaled);  // default rounding mode: ties to even
  const double out = r * quantum;
  if (std::fabs(out) > max_finite) return std::copysign(INFINITY, x);
  return out;
}

TEST(Half, Bf16RoundTripAllBitPatterns) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_bits_to_float(static_cast<uint16_t>(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(f))));
      continue;
    }
    EXPECT_EQ(float_to_bf16_bits(f), b);
  }
}

TEST(Half, F16RoundTripAllBitPatterns) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = f16_bits_to_float(static_cast<uint16_t>(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_bits_to_float(float_to_f16_bits(f))));
      continue;
    }
    EXPECT_EQ(float_to_f16_bits(f), b) << "bits " << b;
  }
}

TEST(Half, RoundsToNearestEvenAgainstDoubleReference) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    const float f = std::bit_cast<float>(bits(rng));
    if (std::isnan(f) || std::isinf(f)) continue;
    // bfloat16: 7 mantissa bits, min normal exponent -126, max 3.3895e38
    const double bf = round_to_format(f, 7, -126, 3.3895313892515355e38);
    EXPECT_EQ(static_cast<double>(bf16_bits_to_float(float_to_bf16_bits(f))), bf) << f;
    // float16: 10 mantissa bits, min exponent -14, max 65504
    const double h = round_to_format(f, 10, -14, 65504.0);
    ASSERT_EQ(static_cast<double>(f16_bits_to_float(float_to_f16_bits(f))), h) << f;
  }
}

TEST(Half, TiesGoToEven) {
  // 1 + 2^-8 lies halfway between bf16 1.0 and 1 + 2^-7: even mantissa is 1.0.
  EXPECT_EQ(bf16_bits_to_float(float_to_bf16_bits(1.0f + 0x1p-8f)), 1.0f);
  EXPECT_EQ(bf16_bits_to_float(float_to_bf16_bits(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);
  EXPECT_EQ(f16_bits_to_float(float_to_f16_bits(1.0f + 0x1p-11f)), 1.0f);
  EXPECT_EQ(f16_bits_to_float(float_to_f16_bits(65520.0f)), INFINITY);
  EXPECT_EQ(f16_bits_to_float(float_to_f16_bits(65519.0f)), 65504.0f);
  EXPECT_EQ(f16_bits_to_float(float_to_f16_bits(0x1p-25f)), 0.0f);          // tie to even 0
  EXPECT_EQ(f16_bits_to_float(float_to_f16_bits(0x1.8p-25f)), 0x1p-24f);   // above the tie
}

TEST(Half, Float8Decode) {
  EXPECT_EQ(f8e4m3_bits_to_float(0x7e), 448.0f);
  EXPECT_TRUE(std::isnan(f8e4m3_bits_to_float(0x7f)));
  EXPECT_EQ(f8e4m3_bits_to_float(0x01), 0x1p-9f);
  EXPECT_EQ(f8e4m3_bits_to_float(0x38), 1.0f);
  EXPECT_EQ(f8e5m2_bits_to_float(0x3c), 1.0f);
  EXPECT_EQ(f8e5m2_bits_to_float(0x7c), INFINITY);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = testing::random_tensor({2, 3, 4}, 1);
  Tensor r = t.reshape({6, -1});
  EXPECT_EQ(r.shape(), (Shape{6, 4}));
  EXPECT_EQ(r.data_ptr(), t.data_ptr());
  Tensor n = t.narrow(1, 1, 2);
  EXPECT_EQ(n.shape(), (Shape{2, 2, 4}));
  EXPECT_FALSE(n.is_contiguous());
  const auto all = t.to_float_vector();
  const auto part = n.to_float_vector();
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 2; ++i)
      for (int k = 0; k < 4; ++k) EXPECT_EQ(part[(b * 2 + i) * 4 + k], all[(b * 3 + i + 1) * 4 + k]);
}

TEST(Tensor, PermuteThenContiguous) {
  Tensor t = testing::random_tensor({2, 3, 5}, 2);
  Tensor p = t.permute({2, 0, 1}).contiguous();
  EXPECT_EQ(p.shape(), (Shape{5, 2, 3}));
  const auto a = t.to_float_vector(), b = p.to_float_vector();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 5; ++k) EXPECT_EQ(b[(k * 2 + i) * 3 + j], a[(i * 3 + j) * 5 + k]);
}

TEST(Tensor, ConvertsBetweenDtypes) {
  Tensor t = testing::random_tensor({7, 13}, 3, -100.0f, 100.0f);
  for (DType d : {DType::BFloat16, DType::Float16, DType::Float64, DType::Float32}) {
    const auto back = t.to(d).to(DType::Float32).to_float_vector();
    const auto orig = t.to_float_vector();
    for (size_t i = 0; i < orig.size(); ++i) {
      const float expect = d == DType::BFloat16 ? bf16_bits_to_float(float_to_bf16_bits(orig[i]))
                           : d == DType::Float16 ? f16_bits_to_float(float_to_f16_bits(orig[i]))
                                                 : orig[i];
      EXPECT_EQ(back[i], expect);
    }
  }
  // Strided source with conversion.
  Tensor s = t.transpose(0, 1).to(DType::BFloat16);
  EXPECT_TRUE(s.is_contiguous());
  EXPECT_EQ(s.shape(), (Shape{13, 7}));
  EXPECT_EQ(s.to(DType::Float32).to_float_vector()[1 * 7 + 2],
            bf16_bits_to_float(float_to_bf16_bits(t.to_float_vector()[2 * 13 + 1])));
}

TEST(Tensor, Int64SurvivesCopy) {
  Tensor t = Tensor::from_vector<int64_t>({(int64_t(1) << 60) + 1, -5}, {2});
  Tensor c = t.transpose(0, 0).clone();
  EXPECT_EQ(c.data<int64_t>()[0], (int64_t(1) << 60) + 1);
  EXPECT_EQ(t.to(DType::Float32).to_float_vector()[1], -5.0f);
}

TEST(Tensor, ErrorsNameTheProblem) {
  Tensor t = Tensor::zeros({2, 3}, DType::Float32);
  EXPECT_THROW(t.reshape({4, 2}), Error);
  EXPECT_THROW(t.narrow(1, 2, 2), Error);
  EXPECT_THROW(t.size(2), Error);
  EXPECT_THROW(Device::parse("gpu"), Error);
  EXPECT_EQ(Device::parse("cuda:3").index, 3);
  try {
    t.reshape({5});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fastdit
