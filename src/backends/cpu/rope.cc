#include <cstring>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/float32_io.h"

namespace fastdit::cpu {

// Both styles rotate R/2 pairs (x[a], x[a + partner]) of the first R = cos.size(-1) dims by
// the same rule
//   out[a] = x[a]·cos[a] − x[a + partner]·sin[a]
//   out[a + partner] = x[a + partner]·cos[a + partner] + x[a]·sin[a + partner];
// they differ only in where pair p starts and how far its partner is. Dims R… are copied.
void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeStyle style, Tensor& out) {
  const int64_t batch = x.size(0), seq = x.size(1), heads = x.size(2), d = x.size(3);
  const ops::RopeTableLayout table = ops::rope_table_layout(cos);
  const int64_t r = table.rotary;
  const bool interleaved = style == ops::RopeStyle::Interleaved;
  const int64_t pair_start_step = interleaved ? 2 : 1;
  const int64_t partner = interleaved ? 1 : r / 2;
  const Tensor x32 = as_float32(x), cos32 = as_float32(cos), sin32 = as_float32(sin);
  Float32Output y(out);
#pragma omp parallel for collapse(2) if (x.numel() > (1 << 14))
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t s = 0; s < seq; ++s) {
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t row = b * table.batch + s * table.seq + h * table.head;
        const float* c = cos32.data<float>() + row;
        const float* sn = sin32.data<float>() + row;
        const int64_t offset = ((b * seq + s) * heads + h) * d;
        const float* xr = x32.data<float>() + offset;
        float* yr = y.data() + offset;
        for (int64_t p = 0; p < r / 2; ++p) {
          const int64_t a = p * pair_start_step, a2 = a + partner;
          yr[a] = xr[a] * c[a] - xr[a2] * sn[a];
          yr[a2] = xr[a2] * c[a2] + xr[a] * sn[a2];
        }
        std::memcpy(yr + r, xr + r, static_cast<size_t>(d - r) * sizeof(float));
      }
    }
  }
  y.store();
}

}  // namespace fastdit::cpu
