// The bounds hostile input meets in library functions: checked size products, the JSON depth
// limit, config integers and derived widths, and attention that lets NaN through as softmax does.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "configs/config_reader.h"
#include "core/checked_math.h"
#include "core/files.h"
#include "core/tensor.h"
#include "models/dit.h"
#include "ops/ops.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CheckedMath, ProductsThatLeaveInt64AreRefused) {
  EXPECT_EQ(checked_mul(int64_t{1} << 31, int64_t{1} << 31), int64_t{1} << 62);
  EXPECT_FALSE(checked_mul(int64_t{1} << 62, 4).has_value());
  EXPECT_FALSE(checked_add(std::numeric_limits<int64_t>::max(), 1).has_value());
  const Shape huge{int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_NE(error_of([&] { shape_numel(huge); }).find("more elements than int64"), std::string::npos);
  EXPECT_NE(error_of([&] { Tensor::empty({int64_t{1} << 31, int64_t{1} << 31}, DType::Float32); })
                .find("more bytes than int64"),
            std::string::npos);
}

TEST(JsonDepth, DeepNestingIsRefusedBeforeParsing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_NE(error_of([&] { check_json_depth(deep, kMaxJsonDepth, "f.json"); }).find("f.json: JSON nested deeper than 64"),
            std::string::npos);
  const std::string ok = std::string(64, '[') + std::string(64, ']');
  EXPECT_EQ(error_of([&] { check_json_depth(ok, kMaxJsonDepth, "f.json"); }), "");
  // Brackets inside strings (escaped quotes too) do not count.
  EXPECT_EQ(error_of([&] { check_json_depth("{\"a\": \"" + std::string(100, '[') + "\\\"\"}", kMaxJsonDepth, "f.json"); }),
            "");
}

TEST(ConfigReader, IntegersAreBounded) {
  ConfigReader reader(nlohmann::json{{"ffn_dim", 4611686018427387904LL}, {"seed", 4611686018427387904LL}}, "c.json");
  EXPECT_NE(error_of([&] { reader.get_int("ffn_dim"); }).find("c.json: ffn_dim = 4611686018427387904 is out of range"),
            std::string::npos);
  EXPECT_EQ(reader.get_int64("seed"), 4611686018427387904LL);
}

TEST(VideoLatentShape, RefusesWhatWouldBeFloored) {
  EXPECT_EQ(video_latent_shape(1, 81, 480, 832, 512, {4, 8, 8}, "x").frames, 21);
  EXPECT_NE(error_of([&] { video_latent_shape(1, 10, 480, 832, 512, {4, 8, 8}, "bench"); }).find("bench: frames 10"),
            std::string::npos);
  EXPECT_NE(error_of([&] { video_latent_shape(1, 81, 20, 832, 512, {4, 8, 8}, "bench"); }).find("height x width"),
            std::string::npos);
}

// softmax with a NaN score is NaN for that row; one NaN key poisons every query row (as in
// PyTorch), wherever it sits in a key block, the first position included.
TEST(AttentionNonFinite, NaNKeyMakesEveryRowNaN) {
  for (int64_t position : {0, 1, 63, 64, 100}) {
    const Tensor q = testing::random_tensor({1, 8, 2, 16}, 1);
    Tensor k = testing::random_tensor({1, 130, 2, 16}, 2);
    const Tensor v = testing::random_tensor({1, 130, 2, 16}, 3);
    k.data<float>()[position * 2 * 16] = std::numeric_limits<float>::quiet_NaN();  // head 0 only
    const std::vector<float> out = ops::attention(q, k, v).to_float_vector();
    for (int64_t i = 0; i < 8; ++i)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t c = 0; c < 16; ++c)
          EXPECT_EQ(std::isnan(out[(i * 2 + h) * 16 + c]), h == 0) << "key " << position << " row " << i;
  }
}

TEST(AttentionNonFinite, NaNQueryRowIsNaNNotZero) {
  Tensor q = testing::random_tensor({1, 4, 1, 8}, 1);
  const Tensor k = testing::random_tensor({1, 70, 1, 8}, 2), v = testing::random_tensor({1, 70, 1, 8}, 3);
  for (int c = 0; c < 8; ++c) q.data<float>()[c] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> out = ops::attention(q, k, v).to_float_vector();
  for (int c = 0; c < 8; ++c) EXPECT_TRUE(std::isnan(out[c]));
  for (int c = 8; c < 32; ++c) EXPECT_TRUE(std::isfinite(out[c]));
}

}  // namespace
}  // namespace fastdit
