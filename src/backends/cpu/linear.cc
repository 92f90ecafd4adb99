#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/float32_io.h"
#include "backends/cpu/gemm.h"

namespace fastdit::cpu {

void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  const int64_t k = weight.size(1), n = weight.size(0);
  const int64_t m = n == 0 ? 0 : out.numel() / n;
  const Tensor x32 = as_float32(x), weight32 = as_float32(weight);
  Float32Output y(out);
  matmul_transposed_b(x32.data<float>(), weight32.data<float>(), y.data(), m, n, k);
  if (bias.defined()) {
    const Tensor bias32 = as_float32(bias);
    const float* b = bias32.data<float>();
    float* rows = y.data();
#pragma omp parallel for if (m * n > (1 << 16))
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) rows[i * n + j] += b[j];
    }
  }
  y.store();
}

}  // namespace fastdit::cpu
