#include "sampling/noise.h"

#include <cmath>
#include <numbers>

namespace fastdit::sampling {

namespace {

// The n-th output of a SplitMix64 stream started at `seed`.
uint64_t splitmix64(uint64_t seed, uint64_t n) {
  uint64_t z = seed + (n + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Uniform in (0, 1]: 53 random bits, never 0, so the logarithm below stays finite.
double uniform(uint64_t seed, uint64_t n) {
  return static_cast<double>((splitmix64(seed, n) >> 11) + 1) * 0x1.0p-53;
}

}  // namespace

Tensor gaussian_noise(const Shape& shape, uint64_t seed) {
  Tensor out = Tensor::empty(shape, DType::Float32);
  float* values = out.data<float>();
  const int64_t count = out.numel();
  const int64_t pairs = (count + 1) / 2;
#pragma omp parallel for if (pairs > (1 << 14))
  for (int64_t pair = 0; pair < pairs; ++pair) {
    const auto n = static_cast<uint64_t>(pair);
    const double radius = std::sqrt(-2.0 * std::log(uniform(seed, 2 * n)));
    const double angle = 2.0 * std::numbers::pi * uniform(seed, 2 * n + 1);
    values[2 * pair] = static_cast<float>(radius * std::cos(angle));
    if (2 * pair + 1 < count) values[2 * pair + 1] = static_cast<float>(radius * std::sin(angle));
  }
  return out;
}

}  // namespace fastdit::sampling
