#pragma once

#include "configs/dit_config.h"

namespace fastdit {

// diffusers StableAudioDiTModel config (Stable Audio Open). Defaults are the constructor's,
// which are stable-audio-open-1.0's values.
struct StableAudioArchConfig : DiTArchConfig {
  int64_t sample_size = 1024;  // latent length the model was trained at (informational)
  int64_t num_layers = 24;
  int64_t attention_head_dim = 64;
  int64_t num_key_value_attention_heads = 12;  // cross-attention K/V heads (GQA)
  int64_t cross_attention_dim = 768;           // cross-attention K/V width = kv heads x head dim
  int64_t time_proj_dim = 256;                 // Fourier features: time_proj_dim / 2 frequencies
  int64_t global_states_input_dim = 1536;
  int64_t cross_attention_input_dim = 768;     // text-state width fed to cross_attention_proj

  static StableAudioArchConfig from_reader(ConfigReader& reader);

 private:
  void validate(const std::string& source);
};

}  // namespace fastdit
