// Walking a smaller tensor as if it were expanded to a larger shape.
#pragma once

#include "core/tensor.h"

namespace fastdit::cpu {

// Strides (in elements of `shape`'s contiguous layout) that walk a tensor of `shape`,
// right-aligned against `target`, as if it had `target`: 0 along broadcast dims.
inline Shape broadcast_strides(const Shape& shape, const Shape& target) {
  const Shape own = contiguous_strides(shape);
  const size_t lead = target.size() - shape.size();
  Shape strides(target.size(), 0);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] != 1) strides[lead + d] = own[d];
  }
  return strides;
}

}  // namespace fastdit::cpu
