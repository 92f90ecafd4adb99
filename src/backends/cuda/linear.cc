#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/gemm.h"

namespace fastdit::cuda {
namespace {

// out = x · weightᵀ (+ bias) (then GELU-tanh). The GEMM runs in out's dtype (a weight of
// another dtype is converted first); whatever part of the epilogue cuBLASLt cannot fuse
// — a bias of an unsupported dtype or alignment, or k == 0 — runs as elementwise kernels.
void linear_with_epilogue(const Tensor& x, const Tensor& weight, const Tensor& bias, bool gelu_tanh,
                          Tensor& out) {
  const int64_t n = weight.size(0), k = weight.size(1);
  const int64_t m = n == 0 ? 0 : out.numel() / n;
  if (m == 0 || n == 0) return;
  const Tensor w = weight.dtype() == out.dtype() ? weight : weight.to(out.dtype());
  const GemmEpilogue wanted = bias.defined()
                                  ? (gelu_tanh ? GemmEpilogue::GeluTanhBias : GemmEpilogue::Bias)
                                  : (gelu_tanh ? GemmEpilogue::GeluTanh : GemmEpilogue::None);
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
  if (fused == wanted) return;
  if (bias.defined()) add(out, bias, out);
  if (gelu_tanh) gelu(out, ops::GeluApprox::Tanh, out);
}

}  // namespace

void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  linear_with_epilogue(x, weight, bias, /*gelu_tanh=*/false, out);
}

void linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  linear_with_epilogue(x, weight, bias, /*gelu_tanh=*/true, out);
}

}  // namespace fastdit::cuda
