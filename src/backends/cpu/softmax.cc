#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/float32_io.h"

namespace fastdit::cpu {

// The tensor is seen as [outer, n, inner]; each (outer, inner) pair is one softmax
// over n elements spaced `inner` apart.
void softmax(const Tensor& x, int64_t dim, Tensor& out) {
  const auto& shape = x.shape();
  const int64_t n = shape[dim];
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= shape[d];
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= shape[d];
  const Tensor x32 = as_float32(x);
  Float32Output y(out);
#pragma omp parallel for collapse(2) if (x.numel() > (1 << 14))
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const float* xs = x32.data<float>() + o * n * inner + i;
      float* ys = y.data() + o * n * inner + i;
      float max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) max = std::max(max, xs[j * inner]);
      float sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        ys[j * inner] = std::exp(xs[j * inner] - max);
        sum += ys[j * inner];
      }
      for (int64_t j = 0; j < n; ++j) ys[j * inner] /= sum;
    }
  }
  y.store();
}

}  // namespace fastdit::cpu
