// Helpers for checking ops against plain double-precision references.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/tensor.h"
#include "support/test_support.h"

namespace fastdit::testing {

// `call` throws fastdit::Error whose message contains `fragment`.
inline void expect_error(const std::function<void()>& call, const std::string& fragment) {
  try {
    call();
    ADD_FAILURE() << "expected fastdit::Error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

inline std::vector<double> to_doubles(const Tensor& t) {
  const std::vector<float> f = t.to_float_vector();
  return {f.begin(), f.end()};
}

// Random float32 values, rounded to what `dtype` can hold (so the same values can be
// fed to an op in either dtype) and returned in `dtype`.
inline Tensor random_in(DType dtype, const Shape& shape, uint64_t seed, float lo = -1.0f,
                        float hi = 1.0f) {
  return random_tensor(shape, seed, lo, hi).to(dtype);
}

// max |out - ref| <= tolerance · max(1, max |ref|), every value finite, sizes equal.
inline void expect_close(const Tensor& out, const std::vector<double>& ref, double tolerance) {
  const std::vector<double> got = to_doubles(out);
  ASSERT_EQ(got.size(), ref.size()) << out.str();
  double max_err = 0, magnitude = 1;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << "element " << i << " of " << out.str() << " is " << got[i];
    max_err = std::max(max_err, std::fabs(got[i] - ref[i]));
    magnitude = std::max(magnitude, std::fabs(ref[i]));
  }
  EXPECT_LE(max_err, tolerance * magnitude) << out.str() << " max |ref| " << magnitude;
}

// Distance in units in the last place between two bfloat16 / float16 tensors of the
// same dtype, over the sign-magnitude bit patterns.
inline int64_t max_ulp_distance(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.dtype(), b.dtype());
  EXPECT_EQ(a.shape(), b.shape());
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  const auto* x = ac.data<uint16_t>();
  const auto* y = bc.data<uint16_t>();
  const auto ordered = [](uint16_t bits) {
    const int64_t magnitude = bits & 0x7fff;
    return (bits & 0x8000) ? -magnitude : magnitude;
  };
  int64_t worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(ordered(x[i]) - ordered(y[i])));
  return worst;
}

// A low-precision op result equals the op's float32 result on the same (exactly
// representable) inputs, rounded to the low-precision dtype, within one ulp.
inline void expect_rounded_from_float32(const Tensor& low_precision, const Tensor& float32_result) {
  ASSERT_EQ(float32_result.dtype(), DType::Float32);
  EXPECT_LE(max_ulp_distance(low_precision, float32_result.to(low_precision.dtype())), 1)
      << low_precision.str();
}

// Row-major multi-index of flat position `flat` in `shape`.
inline std::vector<int64_t> unravel(int64_t flat, const Shape& shape) {
  std::vector<int64_t> index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return index;
}

// Flat position in a tensor of `shape` of the element that broadcasting maps to
// `index` of the (right-aligned, larger) output.
inline int64_t broadcast_source(const std::vector<int64_t>& index, const Shape& shape) {
  const size_t lead = index.size() - shape.size();
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + (shape[d] == 1 ? 0 : index[lead + d]);
  return flat;
}

}  // namespace fastdit::testing
