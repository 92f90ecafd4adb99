// How CPU kernels see tensors of any float dtype: as contiguous float32 arrays. Inputs
// are widened once up front; outputs are computed into float32 and rounded into the
// output dtype at the end (round to nearest even, through Tensor::copy_).
#pragma once

#include "core/half.h"
#include "core/tensor.h"

namespace fastdit::cpu {

// Rounds a float32 value to dtype's precision (and back), as storing it in dtype would.
inline auto rounder(DType dtype) {
  return [dtype](float v) {
    if (dtype == DType::BFloat16) return bf16_bits_to_float(float_to_bf16_bits(v));
    if (dtype == DType::Float16) return f16_bits_to_float(float_to_f16_bits(v));
    return v;
  };
}

// The tensor itself when it is contiguous float32, else a converted copy.
inline Tensor as_float32(const Tensor& t) { return t.to(DType::Float32).contiguous(); }

// float32 storage for `out`: out's own memory when out is float32, else a scratch
// tensor that store() rounds into out.
class Float32Output {
 public:
  explicit Float32Output(Tensor& out)
      : out_(out),
        values_(out.dtype() == DType::Float32 ? out : Tensor::empty(out.shape(), DType::Float32)) {}

  float* data() const { return values_.data<float>(); }
  void store() {
    if (values_.data_ptr() != out_.data_ptr()) out_.copy_(values_);
  }

 private:
  Tensor& out_;
  Tensor values_;
};

}  // namespace fastdit::cpu
