#include "ops/fp8.h"

#include <cmath>

#include "core/error.h"
#include "core/half.h"

namespace fastdit::fp8 {

uint8_t encode_e4m3(float value) { return float_to_f8e4m3_bits(value); }

float decode_e4m3(uint8_t code) { return f8e4m3_bits_to_float(code); }

float row_scale(std::span<const float> row) {
  float amax = 0.0f;
  for (const float v : row) amax = std::fmax(amax, std::fabs(v));
  const float scale = amax / kE4M3Max;
  return scale == 0.0f ? 1.0f : scale;
}

QuantizedRows quantize_rows(std::span<const float> values, int64_t rows, int64_t cols) {
  FASTDIT_CHECK(rows >= 0 && cols >= 0 && static_cast<int64_t>(values.size()) == rows * cols,
                "fp8::quantize_rows: ", values.size(), " values for a [", rows, ", ", cols, "] matrix");
  QuantizedRows q{rows, cols, std::vector<uint8_t>(values.size()), std::vector<float>(static_cast<size_t>(rows))};
  for (int64_t r = 0; r < rows; ++r) {
    const std::span<const float> row = values.subspan(static_cast<size_t>(r * cols), static_cast<size_t>(cols));
    const float scale = row_scale(row);
    q.scales[r] = scale;
    for (int64_t c = 0; c < cols; ++c) q.codes[r * cols + c] = encode_e4m3(row[c] / scale);
  }
  return q;
}

std::vector<float> linear(std::span<const float> x, int64_t m, const QuantizedRows& weight,
                          std::span<const float> bias) {
  const int64_t n = weight.rows, k = weight.cols;
  FASTDIT_CHECK(bias.empty() || static_cast<int64_t>(bias.size()) == n, "fp8::linear: bias of ", bias.size(),
                " values for ", n, " outputs");
  const QuantizedRows xq = quantize_rows(x, m, k);
  std::vector<double> w(static_cast<size_t>(n * k));
  for (size_t i = 0; i < w.size(); ++i) w[i] = decode_e4m3(weight.codes[i]);
  std::vector<float> y(static_cast<size_t>(m * n));
  std::vector<double> row(static_cast<size_t>(k));
#pragma omp parallel for firstprivate(row) if (m * n * k > (1 << 20))
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t c = 0; c < k; ++c) row[c] = decode_e4m3(xq.codes[i * k + c]);
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      const double* wj = &w[static_cast<size_t>(j * k)];
      for (int64_t c = 0; c < k; ++c) sum += row[c] * wj[c];
      double value = sum * xq.scales[i] * weight.scales[j];
      if (!bias.empty()) value += bias[j];
      y[i * n + j] = static_cast<float>(value);
    }
  }
  return y;
}

}  // namespace fastdit::fp8
