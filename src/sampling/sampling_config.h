// Sampling settings: everything about a generation that is not the model's architecture
// (steps, guidance, shift, resolution, frames, fps, seed). They come from presets
// (presets/<variant>.json), from a pipeline folder's own files, and from the command line,
// and never from the arch config.
#pragma once

#include <array>
#include <filesystem>
#include <optional>
#include <string>

namespace fastdit::sampling {

// The most denoising steps a run may ask for (released pipelines use 4 to 100).
inline constexpr int64_t kMaxSteps = 10'000;

struct SamplingConfig {
  std::optional<std::string> scheduler;  // diffusers class, for models without scheduler_config.json
  std::optional<int64_t> steps;
  std::optional<double> guidance_scale;               // the (high-noise) transformer's
  std::optional<double> guidance_scale_2;             // transformer_2's (Wan2.2 A14B low-noise expert)
  std::optional<double> flow_shift;                   // replaces the scheduler config's shift
  std::optional<double> boundary_ratio;               // expert switch at boundary_ratio · num_train_timesteps
  std::optional<int64_t> height, width, frames, fps;  // pixels, frames of the video
  std::optional<uint64_t> seed;
  std::optional<std::array<int64_t, 3>> vae_stride;  // VAE compression: frames, height, width

  // Every field that `over` sets replaces this one's.
  void override_with(const SamplingConfig& over);
  // Checks the ranges of the fields that are set; `source` names them in errors.
  void validate(const std::string& source) const;
};

// Reads a preset: a JSON object with the fields above (plus free-text "description" and
// "source"); an unknown key, a wrong type or a value out of range is an error naming the file.
SamplingConfig read_sampling_preset(const std::filesystem::path& path);

}  // namespace fastdit::sampling
