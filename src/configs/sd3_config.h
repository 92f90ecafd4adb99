#pragma once

#include <optional>
#include <vector>

#include "configs/dit_config.h"

namespace fastdit {

// diffusers SD3Transformer2DModel config (SD3-medium, SD3.5-medium, SD3.5-large/turbo).
// Defaults are the constructor's.
struct SD3ArchConfig : DiTArchConfig {
  int64_t sample_size = 128;  // latent size the pos_embed table was made for
  int64_t patch_size = 2;
  int64_t num_layers = 18;
  int64_t attention_head_dim = 64;
  int64_t joint_attention_dim = 4096;     // text-encoder feature width
  int64_t caption_projection_dim = 1152;  // context_embedder output; must equal hidden_size
  int64_t pooled_projection_dim = 2048;
  int64_t pos_embed_max_size = 96;        // the table is pos_embed_max_size^2 rows
  std::vector<int64_t> dual_attention_layers;  // blocks with a second, image-only attention
  std::optional<std::string> qk_norm;          // null or "rms_norm" (per head)

  bool dual_attention(int64_t layer) const;
  static SD3ArchConfig from_reader(ConfigReader& reader);

 private:
  void validate(const std::string& source);
};

}  // namespace fastdit
