// How the row kernels see a tensor as [rows, last dim]: each row contiguous, the rows
// evenly spaced. A contiguous tensor is one; so is a column range of a wider one (the q
// columns of a fused q|k|v projection, narrowed on the last dim), which such kernels then
// read in place instead of through a contiguous copy.
#pragma once

#include <optional>

#include "core/tensor.h"

namespace fastdit {

// Elements between the starts of consecutive rows of t (the leading dims flattened), or
// nullopt where the rows are not evenly spaced, a row is not contiguous or rows overlap.
inline std::optional<int64_t> even_row_stride(const Tensor& t) {
  if (t.dim() == 0) return std::nullopt;
  const int64_t length = t.size(-1);
  if (t.is_contiguous()) return length;
  if (length > 1 && t.strides().back() != 1) return std::nullopt;
  std::optional<int64_t> row;
  int64_t expected = 0;
  for (int64_t i = t.dim() - 2; i >= 0; --i) {
    const int64_t size = t.size(i), stride = t.strides()[static_cast<size_t>(i)];
    if (size == 1) continue;
    if (!row) {
      if (stride < length) return std::nullopt;
      row = stride;
    } else if (stride != expected) {
      return std::nullopt;
    }
    expected = stride * size;
  }
  return row.value_or(length);
}

}  // namespace fastdit
