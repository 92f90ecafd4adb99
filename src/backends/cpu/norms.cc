#include <cmath>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/float32_io.h"

namespace fastdit::cpu {
namespace {

const float* optional_data(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// layer_norm and rms_norm differ only in whether the row mean is subtracted before
// the second moment is taken. Row statistics accumulate in double so the oracle does
// not drift with the row length.
// round_before_weight: the normalised value is rounded to out's dtype before the weight.
void normalize_last_dim(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                        bool subtract_mean, bool round_before_weight, Tensor& out) {
  const int64_t d = x.size(-1);
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  const Tensor x32 = as_float32(x);
  const Tensor weight32 = weight.defined() ? as_float32(weight) : Tensor{};
  const Tensor bias32 = bias.defined() ? as_float32(bias) : Tensor{};
  const float* w = optional_data(weight32);
  const float* b = optional_data(bias32);
  const auto round = rounder(round_before_weight ? out.dtype() : DType::Float32);
  Float32Output y(out);
#pragma omp parallel for if (x.numel() > (1 << 14))
  for (int64_t row = 0; row < rows; ++row) {
    const float* xr = x32.data<float>() + row * d;
    float* yr = y.data() + row * d;
    double mean = 0;
    if (subtract_mean) {
      for (int64_t j = 0; j < d; ++j) mean += xr[j];
      mean /= static_cast<double>(d);
    }
    double second_moment = 0;
    for (int64_t j = 0; j < d; ++j) second_moment += (xr[j] - mean) * (xr[j] - mean);
    second_moment /= static_cast<double>(d);
    const float inv_std = 1.0f / std::sqrt(static_cast<float>(second_moment) + eps);
    const auto mean32 = static_cast<float>(mean);
    for (int64_t j = 0; j < d; ++j) {
      float v = (xr[j] - mean32) * inv_std;
      if (w) v = round(v) * w[j];
      if (b) v += b[j];
      yr[j] = v;
    }
  }
  y.store();
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
  normalize_last_dim(x, weight, bias, eps, /*subtract_mean=*/true, /*round_before_weight=*/false, out);
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, bool round_before_weight, Tensor& out) {
  normalize_last_dim(x, weight, Tensor{}, eps, /*subtract_mean=*/false, round_before_weight, out);
}

}  // namespace fastdit::cpu
