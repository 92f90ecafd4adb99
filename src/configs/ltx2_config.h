#pragma once

#include <string>
#include <vector>

#include "configs/dit_config.h"

namespace fastdit {

// diffusers LTX2VideoTransformer3DModel config: exactly the constructor's arguments, with
// its defaults (LTX-2 2.0 widths; rope_type "interleaved" by default, while the released
// 2.0 checkpoint says "split"). The 2.3 / 2.5 switches (gated_attn, cross_attn_mod,
// perturbed_attn, use_prompt_embeddings, use_prompt_adaln_single, ff_bias, ...) are fields
// like any other. Values that change no shape but change numbers (rope_type, rope_theta,
// max_pos, base sizes, VAE factors, causal_offset, audio rate / hop / scale, both timestep
// multipliers, norm_eps) are read here and never inferred from weights.
struct Ltx2ArchConfig : DiTArchConfig {
  // video stream
  int64_t patch_size = 1;
  int64_t patch_size_t = 1;
  int64_t attention_head_dim = 128;
  int64_t cross_attention_dim = 4096;
  std::vector<int64_t> vae_scale_factors{8, 32, 32};  // time, height, width
  int64_t pos_embed_max_pos = 20;
  int64_t base_height = 2048;
  int64_t base_width = 2048;
  bool gated_attn = false;
  bool cross_attn_mod = false;
  // audio stream
  int64_t audio_in_channels = 128;
  int64_t audio_out_channels = 128;
  int64_t audio_patch_size = 1;
  int64_t audio_patch_size_t = 1;
  int64_t audio_num_attention_heads = 32;
  int64_t audio_attention_head_dim = 64;
  int64_t audio_cross_attention_dim = 2048;  // also the width of the cross-modal RoPE
  int64_t audio_scale_factor = 4;
  int64_t audio_pos_embed_max_pos = 20;
  int64_t audio_sampling_rate = 16000;
  int64_t audio_hop_length = 160;
  bool audio_gated_attn = false;
  bool audio_cross_attn_mod = false;
  // shared
  int64_t num_layers = 48;
  std::string activation_fn = "gelu-approximate";
  std::string qk_norm = "rms_norm_across_heads";
  bool norm_elementwise_affine = false;
  double norm_eps = 1e-6;
  int64_t caption_channels = 3840;
  bool attention_bias = true;
  bool attention_out_bias = true;
  double rope_theta = 10000.0;
  bool rope_double_precision = true;
  int64_t causal_offset = 1;
  double timestep_scale_multiplier = 1000;
  double cross_attn_timestep_scale_multiplier = 1000;
  std::string rope_type = "interleaved";
  bool use_prompt_embeddings = true;
  bool perturbed_attn = false;
  bool ff_bias = true;
  bool audio_ff_bias = true;
  bool use_prompt_adaln_single = true;
  bool use_keyframes_abs_pos_embedding = false;

  int64_t audio_hidden_size = 0;  // derived: audio heads x audio head dim
  // Either stream's cross-attention to the text is modulated (2.3): the prompt tables exist.
  bool prompt_modulation() const { return cross_attn_mod || audio_cross_attn_mod; }

  static Ltx2ArchConfig from_reader(ConfigReader& reader);

 private:
  void validate(const std::string& source);
};

}  // namespace fastdit
