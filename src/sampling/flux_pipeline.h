// What diffusers' FluxPipeline does around the denoising loop, for text-to-image latents
// from prompt embeddings: its defaults, the packed latent grid, the ids it builds, the
// guidance embedding of guidance-distilled models (FLUX.1-dev: no classifier-free
// guidance), the timestep it feeds (t / 1000), and its sigmas linspace(1, 1/steps, steps)
// shifted by a mu from the image sequence length.
#pragma once

#include <nlohmann/json.hpp>

#include "models/dit.h"
#include "sampling/denoise.h"
#include "sampling/sampling_config.h"

namespace fastdit::sampling {

// FluxPipeline.__call__'s defaults: 28 steps, guidance 3.5, 1024 x 1024 (default_sample_size
// 128 times its VAE scale factor 8).
SamplingConfig flux_defaults();

// The scheduler_config.json of FLUX.1-dev (guidance-distilled: dynamic shifting) or of
// FLUX.1-schnell (static shift 1), for a model that comes without one.
nlohmann::json flux_scheduler_config(bool guidance_embeds);

// The latent grid of height x width pixels: 2 * (pixels // (vae_scale_factor * 2)) latent
// rows and columns, packed into 2 x 2 patches.
struct PackedGrid {
  int64_t rows = 0, cols = 0;  // patches
  int64_t tokens() const { return rows * cols; }
};
PackedGrid flux_packed_grid(int64_t height, int64_t width, int64_t vae_scale_factor);

// FluxPipeline._pack_latents: [B, C, 2R, 2C'] -> [B, R·C', 4C], each token's features (c, py, px).
Tensor pack_latents(const Tensor& latents);

// FluxPipeline's sigmas: numpy.linspace(1.0, 1 / steps, steps).
std::vector<double> flux_sigmas(int64_t steps);

// Fills what FluxPipeline adds to the loop: the conditioning inputs (pooled_projections;
// txt_ids zeros [L, 3]; img_ids (0, row, col) [N, 3]; guidance [B] = guidance_scale when the
// model embeds guidance), the timestep divisor 1000, the sigmas and mu = calculate_shift(N)
// with the scheduler config's anchors. request.latents [B, N, C] and request.prompt_embeds
// must be set; pooled [B, P] is on the models' device. The expert guides without CFG.
void prepare_flux_request(DenoiseRequest& request, const DiTModel& model, const Scheduler& scheduler,
                          const PackedGrid& grid, const Tensor& pooled, double guidance_scale);

}  // namespace fastdit::sampling
