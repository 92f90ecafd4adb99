// The FP8 e4m3 quantization rule (ops/fp8.h) on the CPU: the rounding against hand-checked
// codes and an exhaustive nearest-value search, the per-row scales, the emulated FP8
// linear, the ops:: CPU path, and the precision switch's refusals. The CUDA kernels are
// checked against these functions in tests/gpu/test_cuda_fp8.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "core/half.h"
#include "loader/transformer_loader.h"
#include "nn/layers.h"
#include "ops/fp8.h"
#include "ops/ops.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

bool is_nan_code(uint8_t code) { return (code & 0x7f) == 0x7f; }

// The code an exhaustive search finds: the finite e4m3 value nearest to v, a tie going to
// the even code (mantissa bit 0 clear); beyond ±448 the saturated ±448.
uint8_t nearest_code(float v) {
  if (std::isnan(v)) return 0x7f;
  const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  const double a = std::fabs(static_cast<double>(v));
  if (a >= 448.0) return sign | 0x7e;
  int best = 0;
  double best_distance = a;
  for (int code = 1; code < 0x7f; ++code) {
    const double distance = std::fabs(static_cast<double>(fp8::decode_e4m3(static_cast<uint8_t>(code))) - a);
    if (distance < best_distance || (distance == best_distance && code % 2 == 0)) {
      best = code;
      best_distance = distance;
    }
  }
  return sign | static_cast<uint8_t>(best);
}

TEST(Fp8E4M3, HandCheckedCodes) {
  struct Case {
    float value;
    uint8_t code;
    const char* why;
  };
  const Case cases[] = {
      {0.0f, 0x00, "zero"},
      {-0.0f, 0x80, "negative zero keeps its sign"},
      {1.0f, 0x38, "1.0 = 1.000 x 2^0, exponent field 7"},
      {-1.0f, 0xb8, "-1.0"},
      {0.3f, 0x2a, "0.3 = 1.2 x 2^-2 -> 1.25 x 2^-2"},
      {240.0f, 0x77, "1.875 x 2^7"},
      {448.0f, 0x7e, "the largest finite value"},
      {-448.0f, 0xfe, "the most negative finite value"},
      {449.0f, 0x7e, "beyond 448 saturates"},
      {464.0f, 0x7e, "the halfway point to 480 saturates, never NaN"},
      {1e30f, 0x7e, "far beyond saturates"},
      {kInf, 0x7e, "+infinity saturates to 448 (satfinite)"},
      {-kInf, 0xfe, "-infinity saturates to -448"},
      {1.0625f, 0x38, "tie between 1.0 and 1.125 goes to the even 1.0"},
      {1.0625001f, 0x39, "just above the tie goes up"},
      {1.1875f, 0x3a, "tie between 1.125 and 1.25 goes to the even 1.25"},
      {1.9375f, 0x40, "tie between 1.875 and 2.0 carries into the next binade"},
      {0x1.0p-6f, 0x08, "the smallest normal, 2^-6"},
      {0x1.0p-9f, 0x01, "the smallest subnormal, 2^-9"},
      {7 * 0x1.0p-9f, 0x07, "the largest subnormal"},
      {7.5f * 0x1.0p-9f, 0x08, "tie between the largest subnormal and the smallest normal goes to the even normal"},
      {0x1.0p-10f, 0x00, "half the smallest subnormal ties to the even zero"},
      {0x1.0p-10f * 1.0001f, 0x01, "just above half the smallest subnormal rounds up"},
      {3 * 0x1.0p-10f, 0x02, "tie between 1 and 2 subnormal steps goes to the even 2"},
      {-3 * 0x1.0p-10f, 0x82, "the same, negative"},
      {1e-10f, 0x00, "underflows to zero"},
      {-1e-10f, 0x80, "underflows to negative zero"},
      {std::numeric_limits<float>::denorm_min(), 0x00, "a float32 subnormal underflows"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(fp8::encode_e4m3(c.value), c.code) << c.value << ": " << c.why;
  }
  EXPECT_EQ(fp8::encode_e4m3(kNaN), 0x7f);
  EXPECT_EQ(fp8::encode_e4m3(-kNaN), 0x7f);
  EXPECT_EQ(fp8::decode_e4m3(0x7e), 448.0f);
  EXPECT_EQ(fp8::decode_e4m3(0x01), 0x1.0p-9f);
  EXPECT_EQ(fp8::decode_e4m3(0x08), 0x1.0p-6f);
  EXPECT_EQ(fp8::decode_e4m3(0xb8), -1.0f);
  EXPECT_TRUE(std::isnan(fp8::decode_e4m3(0x7f)));
  EXPECT_TRUE(std::isnan(fp8::decode_e4m3(0xff)));
}

TEST(Fp8E4M3, EveryCodeRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    const auto c = static_cast<uint8_t>(code);
    const float value = fp8::decode_e4m3(c);
    if (is_nan_code(c)) {
      EXPECT_TRUE(std::isnan(value)) << code;
      EXPECT_EQ(fp8::encode_e4m3(value), 0x7f) << code;
    } else {
      EXPECT_EQ(fp8::encode_e4m3(value), c) << code << " = " << value;
    }
  }
}

TEST(Fp8E4M3, MatchesAnExhaustiveNearestSearch) {
  std::vector<float> values;
  // Every midpoint between neighbouring codes and its float32 neighbours (the ties and
  // the values one ulp either side), then values spread over the whole float range.
  for (int code = 0; code < 0x7e; ++code) {
    const float lo = fp8::decode_e4m3(static_cast<uint8_t>(code)), hi = fp8::decode_e4m3(static_cast<uint8_t>(code + 1));
    const float mid = (lo + hi) / 2;
    for (const float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf), lo, hi}) {
      values.push_back(v);
      values.push_back(-v);
    }
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-40.0f, 12.0f), mantissa(1.0f, 2.0f);
  for (int i = 0; i < 20000; ++i) values.push_back((i % 2 ? -1.0f : 1.0f) * mantissa(rng) * std::exp2(exponent(rng)));
  for (const float v : values) EXPECT_EQ(fp8::encode_e4m3(v), nearest_code(v)) << v;
}

TEST(Fp8E4M3, RelativeErrorOfNormalCodesIsAtMostTwoToTheMinusFour) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0x1.0p-6f, 448.0f);
  for (int i = 0; i < 20000; ++i) {
    const float v = u(rng);
    EXPECT_LE(std::fabs(fp8::decode_e4m3(fp8::encode_e4m3(v)) - v), 0x1.0p-4f * v) << v;
  }
}

TEST(Fp8Scales, PerRowAmaxOver448) {
  const std::vector<float> row = {1.0f, -3.0f, 2.0f};
  EXPECT_EQ(fp8::row_scale(row), 3.0f / 448.0f);
  const std::vector<float> zeros = {0.0f, -0.0f, 0.0f};
  EXPECT_EQ(fp8::row_scale(zeros), 1.0f) << "a row of zeros keeps scale 1";
  const std::vector<float> with_nan = {kNaN, 2.0f, -1.0f};
  EXPECT_EQ(fp8::row_scale(with_nan), 2.0f / 448.0f) << "NaN does not take part in the amax";
  const std::vector<float> with_inf = {1.0f, -kInf};
  EXPECT_EQ(fp8::row_scale(with_inf), kInf);
  const std::vector<float> tiny = {0x1.0p-140f};
  EXPECT_GT(fp8::row_scale(tiny), 0.0f) << "a subnormal amax keeps a subnormal scale";
}

TEST(Fp8Scales, QuantizedRows) {
  const std::vector<float> m = {
      1.0f, -3.0f, 2.0f, 0.5f,     // amax 3: -3 -> -448
      0.0f, 0.0f, -0.0f, 0.0f,     // zeros: scale 1, zero codes
      kNaN, 2.0f, -1.0f, 0.0f,     // NaN stays NaN
      1.0f, -kInf, 2.0f, -1.0f,    // an infinity: scale inf, the row becomes NaN and zeros
  };
  const fp8::QuantizedRows q = fp8::quantize_rows(m, 4, 4);
  ASSERT_EQ(q.scales.size(), 4u);
  EXPECT_EQ(q.scales[0], 3.0f / 448.0f);
  EXPECT_EQ(q.codes[1], 0xfe) << "the row's amax becomes the extreme code";
  for (int c = 0; c < 4; ++c) EXPECT_EQ(fp8::decode_e4m3(q.codes[c]), fp8::decode_e4m3(fp8::encode_e4m3(m[c] / q.scales[0])));
  EXPECT_EQ(q.scales[1], 1.0f);
  EXPECT_EQ(q.codes[4], 0x00);
  EXPECT_EQ(q.codes[6], 0x80);
  EXPECT_TRUE(is_nan_code(q.codes[8]));
  EXPECT_EQ(q.codes[9], 0x7e);
  EXPECT_EQ(q.scales[3], kInf);
  EXPECT_TRUE(is_nan_code(q.codes[13]));
  EXPECT_EQ(q.codes[12], 0x00);
  EXPECT_EQ(q.codes[15], 0x80);
  EXPECT_THROW(fp8::quantize_rows(m, 3, 4), Error);
}

TEST(Fp8Linear, EmulationIsTheExactProductOfTheQuantizedValues) {
  // Values e4m3 holds exactly once scaled: row amax 448 gives scale 1.
  const std::vector<float> x = {448.0f, 1.0f, -2.0f, 0.5f};                  // [1, 4]
  const std::vector<float> w = {448.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f, -448.0f};  // [2, 4]
  const fp8::QuantizedRows wq = fp8::quantize_rows(w, 2, 4);
  const std::vector<float> bias = {0.25f, -1.0f};
  const std::vector<float> y = fp8::linear(x, 1, wq, bias);
  ASSERT_EQ(y.size(), 2u);
  EXPECT_EQ(y[0], 448.0f * 448.0f + 0.25f);
  EXPECT_EQ(y[1], 448.0f + 1.0f - 2.0f - 0.5f * 448.0f - 1.0f);
}

using testing::gaussian;

// The stated bound (DESIGN.md, precision): rel_l2 <= 0.05 against the exact product of
// the unquantized operands, for Gaussian operands with outlier channels.
TEST(Fp8Linear, AccuracyAgainstTheUnquantizedProduct) {
  const int64_t m = 64, n = 48, k = 512;
  const std::vector<float> x = gaussian(m, k, 1, 4), w = gaussian(n, k, 2, 0, 1.0f / std::sqrt(float(k)));
  const std::vector<float> y = fp8::linear(x, m, fp8::quantize_rows(w, n, k), {});
  double num = 0, den = 0, dot = 0, yy = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0;
      for (int64_t c = 0; c < k; ++c) ref += double(x[i * k + c]) * w[j * k + c];
      const double got = y[i * n + j];
      num += (got - ref) * (got - ref);
      den += ref * ref;
      dot += got * ref;
      yy += got * got;
    }
  }
  const double rel_l2 = std::sqrt(num / den), cosine = dot / std::sqrt(den * yy);
  std::printf("FP8 linear [%d, %d] x [%d, %d]^T against the exact product: rel_l2 %.4f, cosine %.6f\n", int(m), int(k),
              int(n), int(k), rel_l2, cosine);
  EXPECT_LE(rel_l2, 0.05);
  EXPECT_GE(cosine, 0.9985);
  EXPECT_GT(rel_l2, 0.01) << "the operands were not quantized";
}

TEST(Fp8Ops, CpuPathFollowsTheRule) {
  const Tensor x = testing::random_tensor({3, 5, 32}, 4, -2.0f, 2.0f).to(DType::BFloat16);
  const ops::Fp8Rows q = ops::quantize_fp8_rows(x);
  EXPECT_EQ(q.values.dtype(), DType::Float8E4M3);
  EXPECT_EQ(q.values.shape(), x.shape());
  EXPECT_EQ(q.scales.shape(), (Shape{3, 5}));
  const fp8::QuantizedRows want = fp8::quantize_rows(x.to_float_vector(), 15, 32);
  for (size_t i = 0; i < want.codes.size(); ++i) ASSERT_EQ(q.values.data<uint8_t>()[i], want.codes[i]) << i;
  for (size_t r = 0; r < want.scales.size(); ++r) ASSERT_EQ(q.scales.data<float>()[r], want.scales[r]) << r;

  const Tensor w = testing::random_tensor({16, 32}, 5).to(DType::BFloat16);
  const Tensor bias = testing::random_tensor({16}, 6).to(DType::BFloat16);
  const ops::Fp8Rows wq = ops::quantize_fp8_rows(w);
  const Tensor y = ops::linear_fp8(x, wq.values, wq.scales, bias);
  EXPECT_EQ(y.dtype(), DType::BFloat16);
  EXPECT_EQ(y.shape(), (Shape{3, 5, 16}));
  const fp8::QuantizedRows wrows = fp8::quantize_rows(w.to_float_vector(), 16, 32);
  const std::vector<float> exact = fp8::linear(x.to_float_vector(), 15, wrows, bias.to_float_vector());
  const std::vector<float> got = y.to_float_vector();
  for (size_t i = 0; i < exact.size(); ++i) EXPECT_EQ(got[i], bf16_bits_to_float(float_to_bf16_bits(exact[i]))) << i;

  const Tensor g = ops::linear_fp8(x, wq.values, wq.scales, bias, ops::GeluApprox::Tanh);
  Tensor pre = Tensor::empty({3, 5, 16}, DType::Float32);
  std::copy(exact.begin(), exact.end(), pre.data<float>());
  EXPECT_EQ(testing::max_abs_diff(g, ops::cast(ops::gelu(pre, ops::GeluApprox::Tanh), DType::BFloat16)), 0.0)
      << "GELU on the float32 product, rounded once";
}

TEST(Fp8Ops, RefusesWhatTheFp8GemmCannotTake) {
  const Tensor x = testing::random_tensor({4, 32}, 1).to(DType::BFloat16);
  const ops::Fp8Rows w = ops::quantize_fp8_rows(testing::random_tensor({16, 32}, 2));
  const auto message = [](auto&& call) {
    try {
      call();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { ops::linear_fp8(ops::cast(x, DType::Float32), w.values, w.scales); }).find("bfloat16"),
            std::string::npos);
  EXPECT_NE(message([&] { ops::linear_fp8(x, ops::cast(x, DType::BFloat16), w.scales); }).find("float8_e4m3fn"),
            std::string::npos);
  const ops::Fp8Rows odd = ops::quantize_fp8_rows(testing::random_tensor({16, 24}, 3));
  EXPECT_NE(message([&] {
              ops::linear_fp8(testing::random_tensor({4, 24}, 1).to(DType::BFloat16), odd.values, odd.scales);
            }).find("multiples of 16"),
            std::string::npos);
  EXPECT_NE(message([&] { ops::linear_fp8(x, w.values, w.scales.narrow(0, 0, 8)); }).find("weight_scales"),
            std::string::npos);
}

TEST(Fp8Layers, ReplicatedLinearRunsTheFp8OpOnAQuantizedWeight) {
  nn::ReplicatedLinear linear(32, 16);
  linear.allow_fp8();
  EXPECT_TRUE(linear.weight->fp8_capable);
  const Tensor w = testing::random_tensor({16, 32}, 8).to(DType::BFloat16);
  const Tensor b = testing::random_tensor({16}, 9).to(DType::BFloat16);
  ops::Fp8Rows q = ops::quantize_fp8_rows(w);
  linear.weight->value = q.values;
  linear.weight->row_scales = q.scales;
  linear.bias->value = b;
  const Tensor x = testing::random_tensor({2, 3, 32}, 10).to(DType::BFloat16);
  EXPECT_EQ(testing::max_abs_diff(linear.forward(x), ops::linear_fp8(x, q.values, q.scales, b)), 0.0);
  EXPECT_EQ(testing::max_abs_diff(linear.forward_gelu(x, ops::GeluApprox::Tanh),
                                  ops::linear_fp8(x, q.values, q.scales, b, ops::GeluApprox::Tanh)),
            0.0);
  nn::ReplicatedLinear odd(24, 16);
  odd.allow_fp8();
  EXPECT_FALSE(odd.weight->fp8_capable) << "24 input features: not a shape the FP8 GEMM takes";
}

// The stated choice: in Wan only the blocks' attention and FFN linears may go FP8.
TEST(Fp8Precision, WanMarksTheBlockLinearsOnly) {
  const auto model = build_transformer(testing::source_path("tests/fixtures/wan/keys/Wan2.1-T2V-1.3B.config.json"));
  int fp8 = 0;
  for (auto& [name, param] : model->named_parameters()) {
    const bool block_linear = name.starts_with("blocks.") && name.ends_with(".weight") &&
                              (name.find(".attn1.to_") != std::string::npos ||
                               name.find(".attn2.to_") != std::string::npos || name.find(".ffn.net.") != std::string::npos);
    EXPECT_EQ(param->fp8_capable, block_linear) << name;
    EXPECT_EQ(parameter_dtype(*param, DType::BFloat16, Precision::Fp8),
              block_linear ? DType::Float8E4M3 : parameter_dtype(*param, DType::BFloat16))
        << name;
    fp8 += block_linear;
  }
  EXPECT_EQ(fp8, 30 * 10) << "30 blocks x (q, k, v, out) x 2 attentions + 2 FFN linears";
  const size_t bf16 = parameter_bytes(*model, DType::BFloat16, "1.3B"),
               with_fp8 = parameter_bytes(*model, DType::BFloat16, "1.3B", Precision::Fp8);
  EXPECT_LT(with_fp8, bf16 * 6 / 10) << "the block linears are most of the weights, and halve";
}

// Flux, SD3, LTX-2 and LongCat: the blocks' attention projections and FFNs (and Flux's
// single-block MLP and output projection), never the adaLN linears (norm1.linear,
// norm.linear), norms, attention gates or heads.
TEST(Fp8Precision, OtherFamiliesMarkTheBlockLinearsOnly) {
  const auto under = [](const std::string& name, const std::vector<const char*>& parts) {
    for (const char* part : parts)
      if (name.find(part) != std::string::npos) return true;
    return false;
  };
  struct Variant {
    const char* config;
    std::vector<const char*> blocks, parts, excluded = {};
  };
  const std::vector<const char*> blocks = {"transformer_blocks."};
  const Variant variants[] = {
      {"tests/fixtures/flux/keys/FLUX.1-dev.config.json", {"transformer_blocks.", "single_transformer_blocks."},
       {".attn.", ".ff.", ".ff_context.", ".proj_mlp.", ".proj_out."}},
      {"tests/fixtures/sd3/keys/SD3.5-large.config.json", blocks, {".attn.", ".attn2.", ".ff.", ".ff_context."}},
      // LTX-2: every attention's q/k/v/out and both FFNs, not the attention gates.
      {"tests/fixtures/ltx2/keys/LTX-2.3.config.json", blocks,
       {"attn1.to_", "attn2.to_", "_attn.to_", ".ff.", ".audio_ff."}, {"to_gate_logits"}},
      {"tests/fixtures/longcat/keys/LongCat-Video.config.json", {"blocks."}, {".attn.", ".cross_attn.", ".ffn."}},
  };
  for (const Variant& v : variants) {
    const auto model = build_transformer(testing::source_path(v.config));
    int fp8 = 0;
    for (auto& [name, param] : model->named_parameters()) {
      const bool in_block =
          std::any_of(v.blocks.begin(), v.blocks.end(), [&](const char* prefix) { return name.starts_with(prefix); });
      const bool block = in_block && under(name, v.parts) && !under(name, v.excluded) && name.find("norm") == std::string::npos &&
                         name.ends_with(".weight");
      EXPECT_EQ(param->fp8_capable, block) << v.config << ": " << name;
      fp8 += block;
    }
    EXPECT_GT(fp8, 100) << v.config;
    std::printf("%s: %d weights may go FP8\n", v.config, fp8);
  }
  // Stable Audio marks none (its FP8 forwards measured over the bound: DESIGN.md, Precision).
  const auto stable_audio = build_transformer(testing::source_path("tests/fixtures/stable_audio/keys/stable-audio-open-1.0.config.json"));
  for (auto& [name, param] : stable_audio->named_parameters()) EXPECT_FALSE(param->fp8_capable) << name;
}

TEST(Fp8Precision, RefusalsNameTheSetting) {
  EXPECT_EQ(parse_precision("bf16", "--precision"), Precision::Bf16);
  EXPECT_EQ(parse_precision("fp8", "--precision"), Precision::Fp8);
  try {
    parse_precision("fp16", "--precision");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--precision fp16"), std::string::npos) << e.what();
  }
  LoadOptions cpu;
  cpu.dtype = DType::BFloat16;
  cpu.precision = Precision::Fp8;
  try {
    check_precision(cpu, "--precision");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--precision fp8 needs a CUDA device"), std::string::npos) << e.what();
  }
  LoadOptions f32 = cpu;
  f32.device = Device::cuda(0);
  f32.dtype = DType::Float32;
  try {
    check_precision(f32, "--precision");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bfloat16"), std::string::npos) << e.what();
  }
  const auto model = build_transformer(testing::source_path("tests/fixtures/wan/t2v/transformer"));
  EXPECT_THROW(randomize_parameters(*model, cpu, 1), Error) << "the library refuses it too";
}

}  // namespace
}  // namespace fastdit
