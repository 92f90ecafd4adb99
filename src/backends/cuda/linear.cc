#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/fp8.h"
#include "backends/cuda/gemm.h"

namespace fastdit::cuda {
namespace {

GemmEpilogue epilogue_for(const Tensor& bias, bool gelu_tanh) {
  return bias.defined() ? (gelu_tanh ? GemmEpilogue::GeluTanhBias : GemmEpilogue::Bias)
                        : (gelu_tanh ? GemmEpilogue::GeluTanh : GemmEpilogue::None);
}

// What of the wanted epilogue cuBLASLt did not fuse, as elementwise kernels.
void finish_epilogue(GemmEpilogue fused, GemmEpilogue wanted, const Tensor& bias, bool gelu_tanh, Tensor& out) {
  if (fused == wanted) return;
  if (bias.defined()) add(out, bias, out);
  if (gelu_tanh) gelu(out, ops::GeluApprox::Tanh, out);
}

// out = x · weightᵀ (+ bias) (then GELU-tanh). The GEMM runs in out's dtype (a weight of
// another dtype is converted first); whatever part of the epilogue cuBLASLt cannot fuse
// — a bias of an unsupported dtype or alignment, or k == 0 — runs as elementwise kernels.
void linear_with_epilogue(const Tensor& x, const Tensor& weight, const Tensor& bias, bool gelu_tanh,
                          Tensor& out) {
  const int64_t n = weight.size(0), k = weight.size(1);
  const int64_t m = n == 0 ? 0 : out.numel() / n;
  if (m == 0 || n == 0) return;
  const Tensor w = weight.dtype() == out.dtype() ? weight : weight.to(out.dtype());
  const GemmEpilogue wanted = epilogue_for(bias, gelu_tanh);
  GemmEpilogue fused = GemmEpilogue::None;
  if (k == 0) {
    device_hooks(DeviceType::CUDA).fill_zero(out.data_ptr(), out.nbytes(), out.device().index);
  } else {
    const GemmOperands operands{x.data_ptr(),
                                w.data_ptr(),
                                out.data_ptr(),
                                bias.defined() ? bias.data_ptr() : nullptr,
                                out.dtype(),
                                bias.defined() ? bias.dtype() : out.dtype(),
                                m,
                                n,
                                k,
                                out.device().index};
    fused = gemm_xwt(operands, wanted);
  }
  finish_epilogue(fused, wanted, bias, gelu_tanh, out);
}

// The FP8 GEMM of linear_fp8 on x already quantized; false (nothing run) when `scaling`
// is OuterVector and cuBLASLt has no algorithm for it, unless `required`.
bool run_fp8_gemm(Fp8Scaling scaling, bool required, const ops::Fp8Rows& xq, const Tensor& weight,
                  const Tensor& weight_scales, const Tensor& bias, bool gelu_tanh, Tensor& out) {
  const int64_t n = weight.size(0), k = weight.size(1), m = out.numel() / n;
  const bool outer = scaling == Fp8Scaling::OuterVector;
  GemmOperands operands{xq.values.data_ptr(),
                        weight.data_ptr(),
                        out.data_ptr(),
                        bias.defined() ? bias.data_ptr() : nullptr,
                        out.dtype(),
                        bias.defined() ? bias.dtype() : out.dtype(),
                        m,
                        n,
                        k,
                        out.device().index,
                        /*fp8=*/true,
                        outer ? xq.scales.data<float>() : nullptr,
                        outer ? weight_scales.data<float>() : nullptr};
  if (!outer) {
    gemm_xwt(operands, GemmEpilogue::None);
    scale_fp8_product(out, xq.scales, weight_scales, bias, gelu_tanh);
    return true;
  }
  const GemmEpilogue wanted = epilogue_for(bias, gelu_tanh);
  const std::optional<GemmEpilogue> fused = required ? gemm_xwt(operands, wanted) : try_gemm_xwt(operands, wanted);
  if (!fused) return false;
  finish_epilogue(*fused, wanted, bias, gelu_tanh, out);
  return true;
}

ops::Fp8Rows quantized_rows(const Tensor& x) {
  const int64_t k = x.size(-1), m = x.numel() / k;
  ops::Fp8Rows q{Tensor::empty({m, k}, DType::Float8E4M3, x.device()), Tensor::empty({m}, DType::Float32, x.device())};
  quantize_fp8_rows(x, q.values, q.scales);
  return q;
}

}  // namespace

const char* fp8_scaling_name(Fp8Scaling scaling) {
  return scaling == Fp8Scaling::OuterVector ? "cuBLASLt outer-vector scales" : "unscaled GEMM + own epilogue";
}

void linear_fp8_with(Fp8Scaling scaling, const Tensor& x, const Tensor& weight, const Tensor& weight_scales,
                     const Tensor& bias, bool gelu_tanh, Tensor& out) {
  run_fp8_gemm(scaling, /*required=*/true, quantized_rows(x), weight, weight_scales, bias, gelu_tanh, out);
}

void linear_fp8(const ops::Fp8Rows& x, const Tensor& weight, const Tensor& weight_scales, const Tensor& bias,
                bool gelu_tanh, Tensor& out) {
  if (!run_fp8_gemm(Fp8Scaling::OuterVector, false, x, weight, weight_scales, bias, gelu_tanh, out))
    run_fp8_gemm(Fp8Scaling::Epilogue, true, x, weight, weight_scales, bias, gelu_tanh, out);
}

void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  linear_with_epilogue(x, weight, bias, /*gelu_tanh=*/false, out);
}

void linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  linear_with_epilogue(x, weight, bias, /*gelu_tanh=*/true, out);
}

}  // namespace fastdit::cuda
