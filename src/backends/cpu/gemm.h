// The one GEMM shape the CPU ops need, on OpenBLAS.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/error.h"

namespace fastdit::cpu {

// c[m, n] = a[m, k] · b[n, k]ᵀ, all row-major float32: b is in the PyTorch Linear
// weight layout, so no transpose is ever materialised.
inline void matmul_transposed_b(const float* a, const float* b, float* c, int64_t m, int64_t n,
                                int64_t k) {
  constexpr int64_t kMax = std::numeric_limits<blasint>::max();
  FASTDIT_CHECK(m <= kMax && n <= kMax && k <= kMax, "GEMM of [", m, ", ", k, "] x [", n, ", ",
                k, "] exceeds the BLAS integer range");
  if (m == 0 || n == 0) return;
  const auto lead = static_cast<blasint>(std::max<int64_t>(k, 1));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a, lead, b, lead, 0.0f, c,
              static_cast<blasint>(n));
}

}  // namespace fastdit::cpu
