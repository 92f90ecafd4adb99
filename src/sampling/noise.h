// Seeded initial noise for generation.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace fastdit::sampling {

// Standard normal float32 values on the CPU from a counter-based generator (SplitMix64
// draws through Box-Muller): the same tensor for a seed on every machine and thread count.
// This is not PyTorch's generator, so it cannot reproduce a PyTorch pipeline's latents;
// runs that must match one take their initial latents from a file instead.
Tensor gaussian_noise(const Shape& shape, uint64_t seed);

}  // namespace fastdit::sampling
