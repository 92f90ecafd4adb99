// Exact bfloat16 / float16 <-> float32 conversion, round-to-nearest-even, with
// subnormals, infinities and NaN handled. Needs IEEE float arithmetic in the
// default rounding mode (never build with -ffast-math).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace fastdit {

inline uint16_t float_to_bf16_bits(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float bf16_bits_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

// The float arithmetic does the rounding: scaling pushes the value so that the
// float32 adder rounds away exactly the mantissa bits float16 cannot hold.
inline uint16_t float_to_f16_bits(float value) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (std::fabs(value) * scale_to_inf) * scale_to_zero;
  const uint32_t w = std::bit_cast<uint32_t>(value);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xff000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = std::bit_cast<uint32_t>(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007c00u;
  const uint32_t mantissa_bits = bits & 0x00000fffu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xff000000u ? 0x7e00u : nonsign));
}

inline float f16_bits_to_float(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = std::bit_cast<float>((two_w >> 4) + (0xe0u << 23)) * 0x1.0p-112f;
  const float denormalized = std::bit_cast<float>((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t result = sign | (two_w < (1u << 27) ? std::bit_cast<uint32_t>(denormalized)
                                                     : std::bit_cast<uint32_t>(normalized));
  return std::bit_cast<float>(result);
}

// float8 e4m3fn: bias 7, no infinities, S.1111.111 is NaN.
inline float f8e4m3_bits_to_float(uint8_t bits) {
  const int exponent = (bits >> 3) & 0xf;
  const int mantissa = bits & 0x7;
  if (exponent == 0xf && mantissa == 0x7) return std::numeric_limits<float>::quiet_NaN();
  const float magnitude = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -9)
                                        : std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
  return (bits & 0x80) ? -magnitude : magnitude;
}

// float8 e4m3fn, rounded to nearest even with saturation (the PTX cvt.rn.satfinite.e4m3
// rule): a magnitude beyond 448 (infinity included) becomes ±448, NaN the canonical 0x7f,
// magnitudes below 2^-6 the subnormals k·2^-9. Needs the default rounding mode.
inline uint8_t float_to_f8e4m3_bits(float value) {
  const uint8_t sign = (std::bit_cast<uint32_t>(value) >> 24) & 0x80u;
  const float magnitude = std::fabs(value);
  if (std::isnan(value)) return 0x7f;
  if (magnitude >= 448.0f) return sign | 0x7e;
  if (magnitude < 0x1.0p-6f) {  // subnormal: 0.mmm·2^-6, the code is the count of 2^-9 steps
    return sign | static_cast<uint8_t>(std::nearbyint(magnitude * 512.0f));
  }
  int exponent = 0;
  std::frexp(magnitude, &exponent);  // magnitude = f·2^exponent, f in [0.5, 1)
  --exponent;                         // magnitude = 1.mmm·2^exponent, exponent in [-6, 8]
  // 1.mmm·8 in [8, 16), rounded to an integer; 16 carries into the next binade.
  int mantissa = static_cast<int>(std::nearbyint(std::ldexp(magnitude, 3 - exponent)));
  if (mantissa == 16) mantissa = 8, ++exponent;
  return sign | static_cast<uint8_t>(((exponent + 7) << 3) | (mantissa - 8));
}

// float8 e5m2 is the top byte of a float16.
inline float f8e5m2_bits_to_float(uint8_t bits) {
  return f16_bits_to_float(static_cast<uint16_t>(bits) << 8);
}

}  // namespace fastdit
