// The 8-bit attention on CUDA (ops/attention_8bit.h; attention_int8_sm90.cu):
//  - the quantize kernels against the CPU rule, bit for bit (codes, scales, Vᵀ's permuted
//    layout and its zero padding), bfloat16 and float16;
//  - the kernel against the CPU emulation of the same quantized operands (small shapes) and
//    against float32 attention within the stated bounds (rel_l2 <= 0.05, cosine >= 0.9985,
//    max |error| <= 0.1 · max |reference|) on Gaussian inputs, keys with channel offsets and
//    outlier channels, peaky softmax, grouped heads, ragged lengths, and Wan 1.3B's
//    [1, 32760, 12, 128]; with bfloat16 flash attention's own error beside it (printed);
//  - its throughput at [1, 32760, 12, 128] beside the bfloat16 kernel's (printed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "backends/cuda/cuda_ops.h"
#include "core/half.h"
#include "ops/attention_8bit.h"
#include "ops/fp8.h"
#include "ops/ops.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

const Device kGpu = Device::cuda(0);

// [rows, 128] Gaussian values (bfloat16-exact) with per-channel offsets and outlier channels.
std::vector<float> values(int64_t rows, uint64_t seed, float sigma, float offset_sigma = 0.0f, int outliers = 0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> offsets(128);
  for (float& o : offsets) o = offset_sigma * normal(rng);
  std::vector<float> v(static_cast<size_t>(rows * 128));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < 128; ++c) {
      float x = sigma * normal(rng) + offsets[c];
      if (c < outliers) x *= 20.0f;
      v[r * 128 + c] = bf16_bits_to_float(float_to_bf16_bits(x));
    }
  return v;
}

struct Inputs {
  attention8::Shape shape;
  std::vector<float> q, k, v;
  Tensor tq, tk, tv;  // on the GPU, in `dtype`
};

Inputs make_inputs(const attention8::Shape& s, float q_sigma, float k_offset, int k_outliers, DType dtype,
                   uint64_t seed) {
  Inputs in{s, values(s.batch * s.q_len * s.heads, seed, q_sigma),
            values(s.batch * s.kv_len * s.kv_heads, seed + 1, 1.0f, k_offset, k_outliers),
            values(s.batch * s.kv_len * s.kv_heads, seed + 2, 1.0f, 0.5f, 2), {}, {}, {}};
  in.tq = Tensor::from_vector(in.q, {s.batch, s.q_len, s.heads, 128}).to(dtype).to(kGpu);
  in.tk = Tensor::from_vector(in.k, {s.batch, s.kv_len, s.kv_heads, 128}).to(dtype).to(kGpu);
  in.tv = Tensor::from_vector(in.v, {s.batch, s.kv_len, s.kv_heads, 128}).to(dtype).to(kGpu);
  return in;
}

template <class T>
std::vector<T> host(const Tensor& t) {
  const Tensor c = t.to(Device::cpu());
  return std::vector<T>(c.data<T>(), c.data<T>() + c.numel());
}

TEST(CudaAttention8, QuantizeIsTheCpuRuleBitForBit) {
  for (const DType dtype : {DType::BFloat16, DType::Float16}) {
    const attention8::Shape s{2, 300, 333, 4, 2, 128};
    const Inputs in = make_inputs(s, 1.0f, 3.0f, 2, dtype, 5);
    const attention8::Operands want = attention8::quantize(in.q, in.k, in.v, s);  // float16 holds these bf16 values
    const cuda::Attention8Operands got = cuda::quantize_attention_8bit(in.tq, in.tk, in.tv);
    EXPECT_EQ(host<int8_t>(got.q), want.q) << dtype_name(dtype);
    EXPECT_EQ(host<int8_t>(got.k), want.k) << dtype_name(dtype);
    // The kernel keeps 8 query scales per 128-row tile; those past the last 16 rows are 1.
    const std::vector<float> q_scales = host<float>(got.q_scales);
    const int64_t kept = got.q_scales.size(2), used = s.q_blocks();
    ASSERT_EQ(kept, (s.q_len + 127) / 128 * 8);
    for (int64_t bh = 0; bh < s.batch * s.heads; ++bh)
      for (int64_t i = 0; i < kept; ++i)
        ASSERT_EQ(q_scales[bh * kept + i], i < used ? want.q_scales[bh * used + i] : 1.0f)
            << dtype_name(dtype) << " query scale " << i << " of head " << bh;
    EXPECT_EQ(host<float>(got.k_scales), want.k_scales) << dtype_name(dtype);
    EXPECT_EQ(host<float>(got.v_scales), want.v_scales) << dtype_name(dtype);
    const std::vector<uint8_t> vt = host<uint8_t>(got.v_t);
    const int64_t padded = got.v_t.size(3);
    ASSERT_EQ(padded, 384);
    int64_t mismatches = 0;
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t h = 0; h < s.kv_heads; ++h)
        for (int64_t c = 0; c < 128; ++c)
          for (int64_t p = 0; p < padded; ++p) {
            const int64_t key = cuda::attention8_permuted_key(static_cast<int>(p));
            const uint8_t expected =
                key < s.kv_len ? want.v[static_cast<size_t>(((b * s.kv_len + key) * s.kv_heads + h) * 128 + c)] : 0;
            mismatches += vt[static_cast<size_t>(((b * s.kv_heads + h) * 128 + c) * padded + p)] != expected;
          }
    EXPECT_EQ(mismatches, 0) << dtype_name(dtype);
  }
}

struct Case {
  const char* what;
  attention8::Shape shape;
  float q_sigma, k_offset;
  int k_outliers;
  bool emulate;  // small enough for the CPU emulation
};

void check_case(const Case& c) {
  const attention8::Shape& s = c.shape;
  const Inputs in = make_inputs(s, c.q_sigma, c.k_offset, c.k_outliers, DType::BFloat16, 17);
  const Tensor got = ops::attention_8bit(in.tq, in.tk, in.tv);
  const Tensor flash = ops::attention(in.tq, in.tk, in.tv);
  const Tensor ref = ops::attention(in.tq.to(DType::Float32), in.tk.to(DType::Float32), in.tv.to(DType::Float32));
  const std::vector<float> ref_values = ref.to(Device::cpu()).to_float_vector();
  const testing::Accuracy a = testing::accuracy(got.to(Device::cpu()).to_float_vector(), ref_values);
  const testing::Accuracy a16 = testing::accuracy(flash.to(Device::cpu()).to_float_vector(), ref_values);
  std::printf("%-36s 8-bit: rel_l2 %.4f cosine %.6f max_err/max_ref %.4f | bf16: rel_l2 %.5f cosine %.7f\n", c.what,
              a.rel_l2, a.cosine, a.max_error_ratio, a16.rel_l2, a16.cosine);
  EXPECT_LE(a.rel_l2, 0.05) << c.what;
  EXPECT_GE(a.cosine, 0.9985) << c.what;
  EXPECT_LE(a.max_error_ratio, 0.1) << c.what;
  // One key: the output is that key's value, which 8 bits hold exactly (its scale makes it ±448).
  if (s.kv_len > 1) EXPECT_LT(a16.rel_l2, a.rel_l2) << c.what << ": no 8-bit arithmetic ran";
  if (c.emulate) {
    // The same quantized operands on the CPU: the kernel's running-max P and its order of
    // sums move the output by at most an e4m3 step of P, not more.
    const std::vector<float> emulated =
        attention8::attention(attention8::quantize(in.q, in.k, in.v, s), 1.0f / std::sqrt(128.0f));
    const testing::Accuracy e = testing::accuracy(got.to(Device::cpu()).to_float_vector(), emulated);
    std::printf("%-36s kernel vs emulation: rel_l2 %.4f\n", c.what, e.rel_l2);
    EXPECT_LE(e.rel_l2, 0.02) << c.what;
  }
}

TEST(CudaAttention8, WithinTheBoundsOfFloat32Attention) {
  const Case cases[] = {
      {"gaussian", {1, 512, 640, 4, 4, 128}, 1.0f, 0.0f, 0, true},
      {"key channel offsets and outliers", {1, 512, 640, 4, 4, 128}, 1.0f, 4.0f, 3, true},
      {"peaky softmax (q x 4)", {1, 256, 384, 2, 1, 128}, 4.0f, 1.0f, 0, true},
      {"grouped heads, ragged, batch 2", {2, 130, 201, 4, 2, 128}, 1.0f, 2.0f, 1, true},
      {"one key", {1, 64, 1, 2, 2, 128}, 1.0f, 0.0f, 0, true},
      {"Wan 1.3B [1, 32760, 12, 128], offsets", {1, 32760, 32760, 12, 12, 128}, 1.0f, 2.0f, 2, false},
  };
  for (const Case& c : cases) check_case(c);
}

TEST(CudaAttention8, ThroughputAtWanShape) {
  const attention8::Shape s{1, 32760, 32760, 12, 12, 128};
  const Inputs in = make_inputs(s, 1.0f, 1.0f, 0, DType::BFloat16, 23);
  Tensor out = Tensor::empty(in.tq.shape(), DType::BFloat16, kGpu);
  const double ops = 4.0 * 12 * double(s.q_len) * double(s.kv_len) * 128;
  const double quantize_ms = testing::milliseconds_per_call([&] { cuda::quantize_attention_8bit(in.tq, in.tk, in.tv); });
  const double bf16_ms = testing::milliseconds_per_call([&] { ops::attention(in.tq, in.tk, in.tv); });
  // Both schedules (FASTDIT_ATTENTION8_SCHEDULE): the same numbers, each timed.
  Tensor outputs[2];
  double best_ms = 1e30;
  for (const char* schedule : {"overlap", "ping-pong"}) {
    setenv("FASTDIT_ATTENTION8_SCHEDULE", schedule, 1);
    const double total_ms = testing::milliseconds_per_call([&] { ops::attention_8bit(in.tq, in.tk, in.tv); });
    outputs[best_ms < 1e30] = ops::attention_8bit(in.tq, in.tk, in.tv);
    best_ms = std::min(best_ms, total_ms);
    std::printf("8-bit attention [1, 32760, 12, 128], %s: %.3f ms with quantization (%.0f TOPS), quantization %.3f "
                "ms, kernel alone ~%.0f TOPS | bf16 flash %.3f ms (%.0f TFLOP/s)\n",
                schedule, total_ms, ops / total_ms / 1e9, quantize_ms, ops / (total_ms - quantize_ms) / 1e9, bf16_ms,
                ops / bf16_ms / 1e9);
  }
  unsetenv("FASTDIT_ATTENTION8_SCHEDULE");
  EXPECT_EQ(testing::max_abs_diff(outputs[0], outputs[1]), 0.0) << "the schedules computed different numbers";
  EXPECT_LT(best_ms, bf16_ms) << "the 8-bit attention is slower than bfloat16's";
}

}  // namespace
}  // namespace fastdit
