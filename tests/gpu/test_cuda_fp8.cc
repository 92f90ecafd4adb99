// The FP8 e4m3 path on CUDA (DESIGN.md, precision):
//  - the quantize kernel against the CPU rule (ops/fp8.h), bit for bit, on every float
//    dtype, the vectorised and scalar paths, zeros, NaN, infinities, subnormals and ties;
//  - the FP8 GEMM against the exact CPU emulation (fp8::linear) within what float32
//    accumulation and the bfloat16 output can move it, for both ways of applying the scales;
//  - Wan's block GEMM shapes (m = 32760): accuracy of FP8 and of bf16 against the float32
//    product on Gaussian inputs with outlier channels, and TFLOP/s of each (printed);
//  - fp8 loads (weights in FP8 with their scales) and the parity cases' forwards in fp8
//    within kFp8ForwardBound, for every family that marks its block linears.
//
// Bounds, stated before measuring (derivation in DESIGN.md, precision):
//  - vs the emulation, per element: |gpu - exact| <= 2^-8 |exact| (the bfloat16 output's
//    rounding, half an ulp is 2^-9) + 2^-10 · Σ_k |x̂ ŵ| (accumulation: the products of
//    two e4m3 values are exact in float32, and a float32 sum of k of them is within
//    k · 2^-24 · Σ|x̂ ŵ| <= 2^-11 of it for k <= 8960; Hopper's FP8 tensor cores keep fewer
//    bits in their partial sums between cuBLASLt's promotions to float32, so twice that),
//    the second term x 1.2 under GELU (its slope is at most 1.13); the own-epilogue path
//    rounds the unscaled sum to bfloat16 once more, + 2^-8 · Σ_k |x̂ ŵ|.
//  - vs the float32 product at Wan's shapes: rel_l2 <= 0.05, cosine >= 0.9985,
//    max |error| <= 0.1 · max |reference|.
#include <cublasLt.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/fp8.h"
#include "backends/cuda/gemm.h"
#include "loader/transformer_loader.h"
#include "ops/fp8.h"
#include "ops/ops.h"
#include "parity/parity_case.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

const Device kGpu = Device::cuda(0);
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Tensor cpu_tensor(const std::vector<float>& values, const Shape& shape, DType dtype) {
  return Tensor::from_vector(values, shape).to(dtype);
}

using testing::accuracy;
using testing::Accuracy;
using testing::gaussian;
using testing::milliseconds_per_call;

// Rows meant to hit every branch of the rule; the rest Gaussian.
std::vector<float> adversarial_rows(int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<float> v = gaussian(rows, cols, seed, 2, 3.0f);
  const auto row = [&](int64_t r) { return v.begin() + r * cols; };
  std::fill(row(1), row(2), 0.0f);                                       // zeros: scale 1
  v[2 * cols + cols / 2] = kNaN;                                         // NaN among values
  v[3 * cols + cols / 3] = -kInf;                                        // an infinity
  for (int64_t c = 0; c < cols; ++c) v[4 * cols + c] = (c % 3 - 1) * 1e-39f * (c + 1);  // subnormal amax
  for (int64_t c = 0; c < cols; ++c) v[5 * cols + c] = std::ldexp(c % 2 ? 1.0f : -1.0f, int(c % 80) - 40);
  // Scale 1 (amax 448) and values on the midpoints of neighbouring codes: the ties.
  const float ties[] = {1.0625f, 1.1875f, 1.9375f, 3 * 0x1.0p-10f, 0x1.0p-10f, 7.5f * 0x1.0p-9f, 300.0f, -13.0f};
  for (int64_t c = 0; c < cols; ++c) v[6 * cols + c] = c == 0 ? 448.0f : ties[c % 8];
  return v;
}

bool same_code(uint8_t a, uint8_t b) { return a == b || ((a & 0x7f) == 0x7f && (b & 0x7f) == 0x7f); }

void expect_quantized_like_cpu(const Tensor& x_gpu, const std::vector<float>& values, int64_t rows, int64_t cols,
                               const std::string& what) {
  const ops::Fp8Rows q = ops::quantize_fp8_rows(x_gpu);
  const fp8::QuantizedRows want = fp8::quantize_rows(values, rows, cols);
  const Tensor codes = q.values.to(Device::cpu()), scales = q.scales.to(Device::cpu());
  int bad = 0;
  for (size_t i = 0; i < want.codes.size() && bad < 5; ++i) {
    if (same_code(codes.data<uint8_t>()[i], want.codes[i])) continue;
    ADD_FAILURE() << what << ": code " << i << " (row " << i / cols << ", value " << values[i] << ") is 0x" << std::hex
                  << int(codes.data<uint8_t>()[i]) << ", the CPU rule gives 0x" << int(want.codes[i]);
    ++bad;
  }
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_EQ(scales.data<float>()[r], want.scales[r]) << what << ": scale of row " << r;
}

TEST(CudaFp8Quantize, MatchesTheCpuRuleBitForBit) {
  const int64_t rows = 40;
  for (const int64_t cols : {int64_t{8960}, int64_t{1536}, int64_t{33}, int64_t{8}}) {
    const std::vector<float> raw = adversarial_rows(rows, cols, 3 + cols);
    for (const DType dtype : {DType::BFloat16, DType::Float32, DType::Float16}) {
      const Tensor x = cpu_tensor(raw, {rows, cols}, dtype);
      const std::vector<float> values = x.to_float_vector();  // what the dtype holds
      const std::string what = std::string(dtype_name(dtype)) + " [" + std::to_string(rows) + ", " +
                               std::to_string(cols) + "]";
      expect_quantized_like_cpu(x.to(kGpu), values, rows, cols, what);
      // One element past an allocation: every load is misaligned, the scalar kernel runs.
      Tensor shifted = Tensor::empty({rows * cols + 1}, dtype, kGpu);
      Tensor view = shifted.narrow(0, 1, rows * cols).reshape({rows, cols});
      view.copy_(x);
      expect_quantized_like_cpu(view, values, rows, cols, what + " misaligned");
    }
  }
}

// ---- the FP8 GEMM against the emulation ---------------------------------------------------

struct GemmCase {
  int64_t m, n, k;
  bool bias, gelu;
};

float gelu_tanh(float v) { return 0.5f * v * (1.0f + std::tanh(0.79788456080286536f * (v + 0.044715f * v * v * v))); }

// |gpu - exact| within the bound of the header for every element; returns the worst
// ratio of error to bound.
double expect_within_emulation(cuda::Fp8Scaling scaling, const GemmCase& g, uint64_t seed) {
  const std::vector<float> xv = gaussian(g.m, g.k, seed, 1), wv = gaussian(g.n, g.k, seed + 1, 0, 0.1f);
  const std::vector<float> bv = gaussian(1, g.n, seed + 2, 0);
  const Tensor x = cpu_tensor(xv, {g.m, g.k}, DType::BFloat16), w = cpu_tensor(wv, {g.n, g.k}, DType::BFloat16);
  const Tensor bias = g.bias ? cpu_tensor(bv, {g.n}, DType::BFloat16) : Tensor{};
  const ops::Fp8Rows wq = ops::quantize_fp8_rows(w.to(kGpu));
  Tensor out = Tensor::empty({g.m, g.n}, DType::BFloat16, kGpu);
  cuda::linear_fp8_with(scaling, x.to(kGpu), wq.values, wq.scales, g.bias ? bias.to(kGpu) : Tensor{}, g.gelu, out);
  const std::vector<float> got = out.to_float_vector();

  const std::vector<float> x_values = x.to_float_vector();
  fp8::QuantizedRows wrows = fp8::quantize_rows(w.to_float_vector(), g.n, g.k);
  const std::vector<float> exact = fp8::linear(x_values, g.m, wrows, g.bias ? bias.to_float_vector() : std::vector<float>{});
  std::vector<float> x_abs = x_values;
  for (float& v : x_abs) v = std::fabs(v);
  for (uint8_t& c : wrows.codes) c &= 0x7f;  // |ŵ|: the same scales, the codes' magnitudes
  const std::vector<float> abs_sum = fp8::linear(x_abs, g.m, wrows, {});

  const double slope = g.gelu ? 1.2 : 1.0;
  const double accumulation = 0x1.0p-10 + (scaling == cuda::Fp8Scaling::Epilogue ? 0x1.0p-8 : 0.0);
  double worst = 0;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double want = g.gelu ? gelu_tanh(exact[i]) : exact[i];
    const double bound = 0x1.0p-8 * std::fabs(want) + slope * accumulation * abs_sum[i] + 1e-30;
    const double error = std::fabs(got[i] - want);
    worst = std::max(worst, error / bound);
    if (!(error <= bound) && bad++ < 5)
      ADD_FAILURE() << cuda::fp8_scaling_name(scaling) << " [" << g.m << ", " << g.k << "] x [" << g.n << ", " << g.k
                    << "]^T element " << i << ": " << got[i] << ", exact " << want << ", bound " << bound;
  }
  return worst;
}

TEST(CudaFp8Gemm, MatchesTheEmulationWithinAccumulationError) {
  const GemmCase cases[] = {{1, 16, 16, false, false},  {37, 48, 272, true, false},   {300, 160, 1536, true, true},
                            {130, 64, 8960, false, true}, {2048, 96, 512, true, false}, {5000, 32, 64, false, false}};
  for (const cuda::Fp8Scaling scaling : {cuda::Fp8Scaling::OuterVector, cuda::Fp8Scaling::Epilogue}) {
    uint64_t seed = 100;
    for (const GemmCase& g : cases) {
      try {
        const double worst = expect_within_emulation(scaling, g, seed += 10);
        std::printf("%-30s m=%-5lld n=%-4lld k=%-5lld%s%s: worst error / bound %.3f\n", cuda::fp8_scaling_name(scaling),
                    static_cast<long long>(g.m), static_cast<long long>(g.n), static_cast<long long>(g.k),
                    g.bias ? " +bias" : "", g.gelu ? " gelu" : "", worst);
      } catch (const Error& e) {
        // Only outer-vector scaling may be missing from a cuBLASLt (the path then falls back).
        if (scaling == cuda::Fp8Scaling::Epilogue) throw;
        std::printf("%s unavailable: %s\n", cuda::fp8_scaling_name(scaling), e.what());
      }
    }
  }
}

// ---- Wan's block GEMMs: accuracy and throughput -------------------------------------------

struct WanShape {
  const char* what;
  int64_t n, k;
};


TEST(CudaFp8Gemm, WanShapesAccuracyAndThroughput) {
  const int64_t m = 32760, distinct = 4095, sampled = 512, stride = 8;
  const WanShape shapes[] = {
      {"1.3B self-attn q|k|v", 4608, 1536}, {"1.3B attn q / out", 1536, 1536}, {"1.3B ffn up", 8960, 1536},
      {"1.3B ffn down", 1536, 8960},        {"14B self-attn q|k|v", 15360, 5120}, {"14B attn q / out", 5120, 5120},
      {"14B ffn up", 13824, 5120},          {"14B ffn down", 5120, 13824},
  };
  std::printf("FP8 e4m3 (per-token x, per-channel w scales) vs float32 product, m=%lld, Gaussian x with 8 outlier "
              "channels x50, w ~ N(0, 1/k); cuBLASLt %zu on %s\n", static_cast<long long>(m), cublasLtGetVersion(),
              describe_device(kGpu).c_str());
  uint64_t seed = 1;
  for (const WanShape& s : shapes) {
    // 4095 distinct rows, repeated to m (the rows' values do not change the GEMM's time).
    const Tensor x_rows = cpu_tensor(gaussian(distinct, s.k, seed++, 8), {distinct, s.k}, DType::BFloat16);
    const Tensor w_cpu = cpu_tensor(gaussian(s.n, s.k, seed++, 0, 1.0f / std::sqrt(float(s.k))), {s.n, s.k},
                                    DType::BFloat16);
    const Tensor x_block = x_rows.to(kGpu);
    const std::vector<Tensor> copies(m / distinct, x_block);
    const Tensor x = ops::concat(copies, 0);
    const Tensor w = w_cpu.to(kGpu);
    const ops::Fp8Rows wq = ops::quantize_fp8_rows(w);

    const Tensor y8 = ops::linear_fp8(x, wq.values, wq.scales);
    const Tensor y16 = ops::linear(x, w);
    // The float32 product of the same bfloat16 operands for every 8th distinct row.
    const std::vector<float> x_values = x_rows.to_float_vector();
    std::vector<float> x_sampled(static_cast<size_t>(sampled * s.k));
    for (int64_t r = 0; r < sampled; ++r)
      std::copy_n(x_values.begin() + r * stride * s.k, s.k, x_sampled.begin() + r * s.k);
    const Tensor ref = ops::linear(Tensor::from_vector(x_sampled, {sampled, s.k}).to(kGpu), w.to(DType::Float32));
    const auto rows_of = [&](const Tensor& y) {
      return y.narrow(0, 0, sampled * stride).reshape({sampled, stride, s.n}).narrow(1, 0, 1).to(Device::cpu())
          .to_float_vector();
    };
    const std::vector<float> ref_values = ref.to_float_vector();
    const Accuracy a8 = accuracy(rows_of(y8), ref_values), a16 = accuracy(rows_of(y16), ref_values);

    // Throughput: the FP8 GEMM alone on x quantized beforehand, the whole FP8 linear
    // (quantize + GEMM), the quantization alone, and the bfloat16 GEMM.
    const ops::Fp8Rows xq = ops::quantize_fp8_rows(x);
    Tensor out = Tensor::empty({m, s.n}, DType::BFloat16, kGpu);
    cuda::GemmOperands g{xq.values.data_ptr(), wq.values.data_ptr(), out.data_ptr(), nullptr, DType::BFloat16,
                         DType::BFloat16, m, s.n, s.k, 0, true, xq.scales.data<float>(), wq.scales.data<float>()};
    const bool outer = cuda::try_gemm_xwt(g, cuda::GemmEpilogue::None).has_value();
    if (!outer) g.x_scales = g.weight_scales = nullptr;  // the unscaled GEMM the fallback runs
    const double flop = 2.0 * double(m) * double(s.n) * double(s.k);
    const double gemm_ms = milliseconds_per_call([&] { cuda::gemm_xwt(g, cuda::GemmEpilogue::None); });
    const double linear_ms = milliseconds_per_call([&] { ops::linear_fp8(x, wq.values, wq.scales); });
    const double quantize_ms = milliseconds_per_call([&] { ops::quantize_fp8_rows(x); });
    const double bf16_ms = milliseconds_per_call([&] { ops::linear(x, w); });
    std::printf("%-22s n=%-6lld k=%-6lld fp8: rel_l2=%.4f cos=%.6f max_err/max_ref=%.4f | bf16: rel_l2=%.5f "
                "cos=%.7f | TFLOP/s: fp8 gemm %.0f (%s), fp8 linear with quantize %.0f, bf16 %.0f | quantize "
                "%.3f ms\n",
                s.what, static_cast<long long>(s.n), static_cast<long long>(s.k), a8.rel_l2, a8.cosine,
                a8.max_error_ratio, a16.rel_l2, a16.cosine, flop / gemm_ms / 1e9,
                outer ? "outer-vector scales" : "unscaled, fallback", flop / linear_ms / 1e9, flop / bf16_ms / 1e9,
                quantize_ms);
    EXPECT_LE(a8.rel_l2, 0.05) << s.what;
    EXPECT_GE(a8.cosine, 0.9985) << s.what;
    EXPECT_LE(a8.max_error_ratio, 0.1) << s.what;
    EXPECT_LT(a16.rel_l2, a8.rel_l2) << s.what << ": the FP8 path ran no FP8";
  }
}

// ---- loading in fp8 and the forward ---------------------------------------------------------

// One parity case in fp8: the marked weights load as FP8 with their scales, and the
// forward passes within kFp8ForwardBound. A case whose widths are no multiples of 16 keeps
// every weight in bf16 and computes what bf16 does.
void check_fp8_case(const std::string& label) {
  const auto dir = testing::source_path("tests/fixtures/" + label);
  LoadOptions options;
  options.device = kGpu;
  options.dtype = DType::BFloat16;
  options.precision = Precision::Fp8;
  const LoadedTransformer loaded = load_transformer(dir / "transformer", options);
  int fp8 = 0;
  for (auto& [param_name, param] : loaded.model->named_parameters()) {
    const bool quantized = param->value.dtype() == DType::Float8E4M3;
    EXPECT_EQ(quantized, param->fp8_capable) << label << ": " << param_name;
    EXPECT_EQ(param->row_scales.defined(), quantized) << label << ": " << param_name;
    if (quantized) {
      EXPECT_EQ(param->row_scales.shape(), (Shape{param->shape[0]})) << param_name;
    }
    fp8 += quantized;
  }
  const ParityResult bf16 = run_parity_case(dir, kGpu, DType::BFloat16);
  const ParityResult r = run_parity_case(dir, kGpu, DType::BFloat16, std::nullopt, nullptr, Precision::Fp8);
  std::printf("%s fp8: %d FP8 weights, worst rel_l2 %.4f against float32 (bf16 run: %.4f)\n%s", label.c_str(), fp8,
              r.rel_l2, bf16.rel_l2, head_lines(r).c_str());
  EXPECT_TRUE(r.pass) << label;
  if (fp8 > 0) {
    EXPECT_NE(r.rel_l2, bf16.rel_l2) << label << ": the fp8 forward computed what the bf16 one does";
  } else {
    EXPECT_EQ(r.rel_l2, bf16.rel_l2) << label << ": no FP8 weight, yet the forward changed";
  }
}

// Every parity case of the families that mark their block linears.
TEST(CudaFp8Load, BlockLinearsLoadInFp8AndTheForwardsStayWithinTheBound) {
  int cases = 0;
  for (const std::string family : {"wan", "flux", "sd3", "stable_audio", "ltx2", "longcat"}) {
    for (const std::string& name : testing::family_cases(family)) {
      ++cases;
      try {
        check_fp8_case(family + "/" + name);
      } catch (const Error& e) {
        ADD_FAILURE() << family << "/" << name << ": " << e.what();
      }
    }
  }
  EXPECT_GT(cases, 10);
}

}  // namespace
}  // namespace fastdit
