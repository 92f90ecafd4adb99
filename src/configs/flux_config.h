#pragma once

#include <vector>

#include "configs/dit_config.h"

namespace fastdit {

// diffusers FluxTransformer2DModel config (FLUX.1-dev, FLUX.1-schnell). Defaults are the
// constructor's, which are the FLUX.1 values (guidance_embeds aside: dev sets it).
struct FluxArchConfig : DiTArchConfig {
  int64_t patch_size = 1;
  int64_t num_layers = 19;         // double-stream blocks
  int64_t num_single_layers = 38;  // single-stream blocks
  int64_t attention_head_dim = 128;
  int64_t joint_attention_dim = 4096;  // text-encoder (T5) feature width
  int64_t pooled_projection_dim = 768;  // CLIP pooled width
  bool guidance_embeds = false;         // the guidance-distilled variant's embedding (dev)
  std::vector<int64_t> axes_dims_rope{16, 56, 56};  // rotary width per id axis; sums to the head dim

  static FluxArchConfig from_reader(ConfigReader& reader);

 private:
  void validate(const std::string& source);
};

}  // namespace fastdit
