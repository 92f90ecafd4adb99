// FP8 e4m3 quantization as plain functions: the rule every FP8 path follows (the CUDA
// quantize kernel reproduces it bit for bit) and the CPU emulation of an FP8 linear that
// the ops:: CPU backend and the tests use as the oracle.
//
// The rule, per row r of a [rows, cols] matrix (activations per token, weights per output
// channel):
//   amax_r  = max |x[r, c]| over the row's non-NaN values (an infinity counts);
//   scale_r = amax_r / 448 in float32, or 1 when that is 0 (a row of zeros);
//   code    = e4m3(x[r, c] / scale_r), the float32 quotient rounded to nearest even,
//             saturated to ±448 (float_to_f8e4m3_bits).
// So code · scale_r ≈ x[r, c] with a relative error of at most 2^-4 for normal codes
// (|x| ≥ 2^-6 · scale_r) and an absolute one of at most 2^-10 · scale_r below. A NaN stays
// NaN; an infinite element makes its row's scale infinite, so the row becomes NaN (the
// infinity) and zeros, and the output rows that use it are NaN: non-finite in, non-finite out.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace fastdit::fp8 {

inline constexpr float kE4M3Max = 448.0f;

// e4m3fn code of a float (round to nearest even, saturating) and its value.
uint8_t encode_e4m3(float value);
float decode_e4m3(uint8_t code);

// scale_r of one row, as above.
float row_scale(std::span<const float> row);

struct QuantizedRows {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;  // [rows, cols] e4m3fn
  std::vector<float> scales;   // [rows]
};
// Every row of a row-major [rows, cols] matrix by the rule above.
QuantizedRows quantize_rows(std::span<const float> values, int64_t rows, int64_t cols);

// The FP8 linear, exactly: y[m, n] = Σ_k x̂[m, k] · ŵ[n, k] + bias[n] with x̂ = x quantized
// per row (quantize_rows) and ŵ = the given quantized weight, each product and the sum
// in float64 (the value a float32 accumulator approximates), returned in float32 before
// any output rounding. x row-major [m, k]; bias [n] or empty.
std::vector<float> linear(std::span<const float> x, int64_t m, const QuantizedRows& weight,
                          std::span<const float> bias);

}  // namespace fastdit::fp8
