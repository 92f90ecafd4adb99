#pragma once

#include <array>
#include <optional>

#include "configs/dit_config.h"

namespace fastdit {

// diffusers WanTransformer3DModel config (Wan2.1 T2V/I2V/FLF2V, Wan2.2 TI2V/A14B).
struct WanArchConfig : DiTArchConfig {
  std::array<int64_t, 3> patch_size{1, 2, 2};
  int64_t attention_head_dim = 128;
  int64_t text_dim = 4096;
  int64_t freq_dim = 256;
  int64_t ffn_dim = 13824;
  int64_t num_layers = 40;
  bool cross_attn_norm = true;
  std::optional<std::string> qk_norm = "rms_norm_across_heads";
  double eps = 1e-6;
  std::optional<int64_t> image_dim;
  std::optional<int64_t> added_kv_proj_dim;
  int64_t rope_max_seq_len = 1024;
  std::optional<int64_t> pos_embed_seq_len;

  static WanArchConfig from_reader(ConfigReader& reader);
  // The original Wan repositories' config (`_class_name: WanModel`: dim, num_heads,
  // in_dim, model_type, ...), translated to the same fields.
  static WanArchConfig from_original_reader(ConfigReader& reader);

 private:
  void validate(const std::string& source);
};

}  // namespace fastdit
