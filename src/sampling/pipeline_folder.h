// What `fastdit generate` reads from a model folder besides the weights: a diffusers
// pipeline folder's model_index.json names the transformer(s), the scheduler and Wan2.2's
// expert boundary; vae/config.json gives the VAE's compression.
#pragma once

#include <filesystem>
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
// Only text-to-video WanPipeline folders are accepted: other pipelines need conditioning
// inputs (images, videos) that generate does not take.
PipelineFolder read_pipeline_folder(const std::filesystem::path& path);

}  // namespace fastdit::sampling
