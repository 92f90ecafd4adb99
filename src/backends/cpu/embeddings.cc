#include <cmath>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/float32_io.h"
#include "backends/cpu/gemm.h"

namespace fastdit::cpu {

// A stride == kernel convolution is a GEMM over non-overlapping patches: gather every
// patch of a batch item as one row in (c, kt, kh, kw) order — the weight's own
// layout — then out[b] [O, L] = weight [O, P] · patches[b] [L, P]ᵀ, which is already
// the [O, T', H', W'] output layout.
void conv3d_patch(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  const int64_t batch = x.size(0), channels = x.size(1), frames = x.size(2), height = x.size(3),
                width = x.size(4);
  const int64_t kt = weight.size(2), kh = weight.size(3), kw = weight.size(4);
  const int64_t out_channels = weight.size(0);
  const int64_t pt = out.size(2), ph = out.size(3), pw = out.size(4);
  const int64_t patches = pt * ph * pw, patch_size = channels * kt * kh * kw;
  const Tensor x32 = as_float32(x), weight32 = as_float32(weight);
  std::vector<float> rows(static_cast<size_t>(batch * patches * patch_size));
#pragma omp parallel for collapse(2)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t patch = 0; patch < patches; ++patch) {
      const int64_t t0 = patch / (ph * pw) * kt, h0 = patch / pw % ph * kh, w0 = patch % pw * kw;
      float* row = rows.data() + (b * patches + patch) * patch_size;
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t t = 0; t < kt; ++t) {
          for (int64_t h = 0; h < kh; ++h) {
            const float* src = x32.data<float>() +
                               (((b * channels + c) * frames + t0 + t) * height + h0 + h) * width + w0;
            for (int64_t w = 0; w < kw; ++w) *row++ = src[w];
          }
        }
      }
    }
  }
  Float32Output y(out);
  for (int64_t b = 0; b < batch; ++b) {
    matmul_transposed_b(weight32.data<float>(), rows.data() + b * patches * patch_size,
                        y.data() + b * out_channels * patches, out_channels, patches, patch_size);
  }
  if (bias.defined()) {
    const Tensor bias32 = as_float32(bias);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t o = 0; o < out_channels; ++o) {
        float* plane = y.data() + (b * out_channels + o) * patches;
        for (int64_t i = 0; i < patches; ++i) plane[i] += bias32.data<float>()[o];
      }
    }
  }
  y.store();
}

// The float32 operation order of diffusers' get_timestep_embedding, so results match
// it to the last bit wherever sin / cos / exp do.
void timestep_embedding(const Tensor& t, bool flip_sin_to_cos, float downscale_freq_shift,
                        float scale, float max_period, Tensor& out) {
  const int64_t n = out.size(0), dim = out.size(1), half = dim / 2;
  const float neg_log_max_period = static_cast<float>(-std::log(static_cast<double>(max_period)));
  const float denominator = static_cast<float>(half) - downscale_freq_shift;
  std::vector<float> frequencies(static_cast<size_t>(half));
  for (int64_t k = 0; k < half; ++k) {
    frequencies[k] = std::exp(neg_log_max_period * static_cast<float>(k) / denominator);
  }
  const Tensor t32 = as_float32(t);
  float* y = out.data<float>();
  const int64_t sin_column = flip_sin_to_cos ? half : 0, cos_column = flip_sin_to_cos ? 0 : half;
  for (int64_t i = 0; i < n; ++i) {
    float* row = y + i * dim;
    for (int64_t k = 0; k < half; ++k) {
      const float angle = scale * (t32.data<float>()[i] * frequencies[k]);
      row[sin_column + k] = std::sin(angle);
      row[cos_column + k] = std::cos(angle);
    }
    if (dim % 2 == 1) row[dim - 1] = 0.0f;
  }
}

}  // namespace fastdit::cpu
