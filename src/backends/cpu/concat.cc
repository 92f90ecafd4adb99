#include <cstring>

#include "backends/cpu/cpu_ops.h"

namespace fastdit::cpu {

// Seen as [outer, size(dim) * inner] bytes, every input contributes one contiguous
// chunk to each outer row of the output; no dtype conversion is involved.
void concat(std::span<const Tensor> tensors, int64_t dim, Tensor& out) {
  int64_t outer = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.size(d);
  const auto element_size = static_cast<int64_t>(out.element_size());
  const int64_t out_row_bytes = outer == 0 ? 0 : static_cast<int64_t>(out.nbytes()) / outer;
  auto* dst = static_cast<char*>(out.data_ptr());
  int64_t column = 0;  // byte offset of the current input inside an output row
  for (const Tensor& t : tensors) {
    const int64_t row_bytes = outer == 0 ? 0 : t.numel() / outer * element_size;
    const auto* src = static_cast<const char*>(t.data_ptr());
#pragma omp parallel for if (t.nbytes() > (1 << 20))
    for (int64_t o = 0; o < outer; ++o) {
      std::memcpy(dst + o * out_row_bytes + column, src + o * row_bytes, row_bytes);
    }
    column += row_bytes;
  }
}

}  // namespace fastdit::cpu
