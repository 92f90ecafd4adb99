// The denoising loop of diffusers' WanPipeline, with classifier-free guidance and Wan2.2
// A14B's two experts, on any scheduler; with the conditioning inputs, the timestep scale and
// the sigmas a pipeline adds around it (FluxPipeline: sampling/flux_pipeline.h).
#pragma once

#include <functional>
#include <optional>

#include "distributed/communicator.h"
#include "models/dit.h"
#include "sampling/scheduler.h"

namespace fastdit::sampling {

// A model and the guidance scale it runs with.
struct Expert {
  DiTModel* model = nullptr;
  double guidance_scale = 1.0;
};

// Cond and uncond in one forward of batch 2B (faster), or two forwards of batch B (half
// the activation memory). Batched needs both embeddings of one length; when they differ
// the two forwards run anyway.
enum class CfgBatching { Batched, Sequential };

struct DenoiseRequest {
  Expert expert;                         // `transformer`: every step, or t >= the boundary
  std::optional<Expert> expert_2;        // `transformer_2`: the steps below the boundary
  std::optional<double> boundary_ratio;  // switch at boundary_ratio · num_train_timesteps
  int64_t steps = 50;
  // The pipeline's own sigmas (one per step) and resolution-dependent mu for
  // scheduler.set_timesteps; empty sigmas: the scheduler's spacing for `steps`.
  std::vector<double> sigmas;
  std::optional<double> mu;
  Tensor latents;                 // initial noise [B, ...] as the model takes it, on the models' device
  Tensor prompt_embeds;           // [B, L, D]
  Tensor negative_prompt_embeds;  // [B, L', D]; required when guidance applies
  CfgBatching cfg_batching = CfgBatching::Batched;
  // Inputs besides latents, timestep and text that every step feeds unchanged (Flux: the
  // pooled text embedding, the ids, the distilled guidance), by the model's input names.
  TensorMap conditioning;
  // The model's timestep is the scheduler's divided by this, in float32 (FluxPipeline feeds
  // t / 1000).
  float timestep_divisor = 1.0f;
  // Each expert's forward captured into a CUDA graph at its first step and replayed on
  // the later ones (models/captured_forward.h): the same numbers, fewer launches.
  bool cuda_graph = false;
  // CFG-parallel: a group of two ranks, rank 0 running every step's cond forward and rank 1
  // the uncond one, each forward the whole of its rank (or of the sequence-parallel group it
  // leads its half of: the models' own communicator). The two predictions are exchanged
  // in one all_gather per step and both ranks combine them alike, so every rank ends each
  // step with the same latents, those of the single-process loop with
  // CfgBatching::Sequential. Needs guidance (uses_guidance); cfg_batching is not used.
  distributed::Communicator* cfg_parallel = nullptr;
};

struct StepEvent {
  int64_t index = 0;
  int64_t count = 0;
  float timestep = 0;
  bool second_expert = false;  // transformer_2 ran this step
};

struct DenoiseCallbacks {
  std::function<void(const StepEvent&)> before_step;  // e.g. the activation trace's step index
  std::function<void(const StepEvent&)> after_step;   // e.g. progress
};

// Whether a run applies classifier-free guidance: as WanPipeline decides it, when the
// first expert's guidance scale exceeds 1 (then both experts guide, each with its scale).
bool uses_guidance(const DenoiseRequest& request);

// For each timestep of scheduler.set_timesteps(steps): picks the expert (transformer
// while t >= boundary, else transformer_2), predicts the flow for the latents, guided as
// uncond + scale · (cond − uncond), and takes scheduler.step. Returns the final latents.
Tensor denoise(Scheduler& scheduler, const DenoiseRequest& request, const DenoiseCallbacks& callbacks = {});

}  // namespace fastdit::sampling
