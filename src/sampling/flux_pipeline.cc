#include "sampling/flux_pipeline.h"

#include "configs/flux_config.h"
#include "core/error.h"
#include "ops/ops.h"

namespace fastdit::sampling {

SamplingConfig flux_defaults() {
  SamplingConfig s;
  s.scheduler = "FlowMatchEulerDiscreteScheduler";
  s.steps = 28;
  s.guidance_scale = 3.5;
  s.height = 1024;
  s.width = 1024;
  s.frames = 1;
  s.fps = 1;
  s.seed = 0;
  s.vae_stride = std::array<int64_t, 3>{1, 8, 8};
  return s;
}

nlohmann::json flux_scheduler_config(bool guidance_embeds) {
  return {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
          {"base_image_seq_len", 256},
          {"base_shift", 0.5},
          {"max_image_seq_len", 4096},
          {"max_shift", 1.15},
          {"num_train_timesteps", 1000},
          {"shift", guidance_embeds ? 3.0 : 1.0},
          {"use_dynamic_shifting", guidance_embeds}};
}

PackedGrid flux_packed_grid(int64_t height, int64_t width, int64_t vae_scale_factor) {
  FASTDIT_CHECK(vae_scale_factor > 0, "Flux: the VAE scale factor must be positive");
  const int64_t step = vae_scale_factor * 2;
  FASTDIT_CHECK(height >= step && width >= step, "Flux: height x width ", height, "x", width,
                " gives no latent patch (each is ", step, " x ", step, " pixels)");
  return {height / step, width / step};
}

Tensor pack_latents(const Tensor& latents) {
  FASTDIT_CHECK(latents.dim() == 4 && latents.size(2) % 2 == 0 && latents.size(3) % 2 == 0,
                "pack_latents: latents must be [B, C, H, W] with even H and W, got ", latents.str());
  const int64_t b = latents.size(0), c = latents.size(1), h = latents.size(2) / 2, w = latents.size(3) / 2;
  const Tensor patches = latents.reshape({b, c, h, 2, w, 2});
  return ops::permute(patches, std::vector<int64_t>{0, 2, 4, 1, 3, 5}).reshape({b, h * w, c * 4});
}

std::vector<double> flux_sigmas(int64_t steps) {
  FASTDIT_CHECK(steps >= 1, "Flux: need at least one step, got ", steps);
  return linspace(1.0, 1.0 / static_cast<double>(steps), steps);
}

namespace {

// FluxPipeline._prepare_latent_image_ids: (0, row, col) per packed token, row-major.
Tensor image_ids(const PackedGrid& grid) {
  Tensor ids = Tensor::zeros({grid.tokens(), 3}, DType::Float32);
  float* p = ids.data<float>();
  for (int64_t r = 0; r < grid.rows; ++r)
    for (int64_t c = 0; c < grid.cols; ++c) {
      p[(r * grid.cols + c) * 3 + 1] = static_cast<float>(r);
      p[(r * grid.cols + c) * 3 + 2] = static_cast<float>(c);
    }
  return ids;
}

}  // namespace

void prepare_flux_request(DenoiseRequest& r, const DiTModel& model, const Scheduler& scheduler,
                          const PackedGrid& grid, const Tensor& pooled, double guidance_scale) {
  const auto* config = dynamic_cast<const FluxArchConfig*>(&model.arch_config());
  FASTDIT_CHECK(config, "FluxPipeline runs FluxTransformer2DModel, not ", model.type_name());
  FASTDIT_CHECK(config->axes_dims_rope.size() == 3, "FluxPipeline builds ids of 3 axes; the model has ",
                config->axes_dims_rope.size());
  const Tensor& latents = r.latents;
  FASTDIT_CHECK(latents.defined() && latents.dim() == 3 && latents.size(1) == grid.tokens() &&
                    latents.size(2) == config->in_channels,
                "Flux: latents must be packed [B, ", grid.tokens(), " (", grid.rows, " x ", grid.cols, " patches), ",
                config->in_channels, "], got ", latents.defined() ? latents.str() : "none");
  const int64_t batch = latents.size(0);
  FASTDIT_CHECK(r.prompt_embeds.defined() && r.prompt_embeds.dim() == 3, "Flux: prompt embeddings must be [B, L, D]");
  FASTDIT_CHECK(pooled.defined() && pooled.dim() == 2 && pooled.size(0) == batch, "Flux: pooled prompt embeddings ",
                "must be [", batch, ", ", config->pooled_projection_dim, "], got ",
                pooled.defined() ? pooled.str() : "none");
  FASTDIT_CHECK(r.prompt_embeds.size(1) <= 512, "Flux: ", r.prompt_embeds.size(1),
                " text tokens; FluxPipeline takes at most max_sequence_length 512");
  r.expert.guidance_scale = 1.0;  // guidance-distilled or timestep-distilled: no classifier-free guidance
  r.negative_prompt_embeds = {};
  r.timestep_divisor = 1000.0f;
  r.sigmas = flux_sigmas(r.steps);
  r.mu = calculate_shift(grid.tokens(), scheduler.shift_anchors());
  // The ids stay on the host: the model reads them there to pick its rotary table.
  r.conditioning = {{"pooled_projections", pooled},
                    {"txt_ids", Tensor::zeros({r.prompt_embeds.size(1), 3}, DType::Float32)},
                    {"img_ids", image_ids(grid)}};
  if (config->guidance_embeds)
    r.conditioning["guidance"] =
        Tensor::from_vector(std::vector<float>(static_cast<size_t>(batch), static_cast<float>(guidance_scale)),
                            {batch})
            .to(latents.device());
}

}  // namespace fastdit::sampling
