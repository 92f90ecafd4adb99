// What `fastdit generate` reads from a model folder besides the weights: a diffusers
// pipeline folder's model_index.json names the transformer(s), the scheduler and Wan2.2's
// expert boundary; vae/config.json gives the VAE's compression. And which pipeline's loop
// and defaults a generation runs.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "sampling/sampling_config.h"

namespace fastdit::sampling {

struct PipelineFolder {
  std::string pipeline_class;         // model_index.json _class_name; empty for a transformer folder
  std::filesystem::path transformer;  // a transformer folder
  std::optional<std::filesystem::path> transformer_2;     // Wan2.2 A14B's low-noise expert
  std::optional<std::filesystem::path> scheduler_config;  // scheduler/scheduler_config.json
  SamplingConfig settings;                                // what the folder fixes: boundary_ratio, vae_stride
};

// `path` is a pipeline folder (model_index.json), a transformer folder (config.json), or a
// folder holding transformer/config.json alone.
// Only text-to-video WanPipeline and text-to-image FluxPipeline folders are accepted: other
// pipelines need conditioning inputs (images, videos) that generate does not take.
PipelineFolder read_pipeline_folder(const std::filesystem::path& path);

// The diffusers pipeline whose loop runs: WanPipeline (CFG, two experts) or FluxPipeline
// (sampling/flux_pipeline.h).
enum class PipelineKind { Wan, Flux };
struct PipelineChoice {
  PipelineKind kind = PipelineKind::Wan;
  bool guidance_embeds = false;  // Flux: a guidance-distilled transformer (FLUX.1-dev)
};
// From the folder's pipeline class, else from the transformer config's _class_name
// (`transformer`: a config.json or a folder holding one).
PipelineChoice choose_pipeline(const PipelineFolder& folder, const std::filesystem::path& transformer);
// That pipeline's __call__ defaults (WanPipeline's with UniPC flow shift 3; FluxPipeline's).
SamplingConfig pipeline_defaults(PipelineKind kind);
// The scheduler config its models ship when a folder has none.
nlohmann::json default_pipeline_scheduler(const PipelineChoice& choice, const std::string& class_name);

}  // namespace fastdit::sampling
