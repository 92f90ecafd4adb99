#include "configs/ltx2_config.h"

#include "core/error.h"

namespace fastdit {

namespace {
// A channel count whose null means "as the input's" (the constructor's `out or in`).
int64_t channels_or(ConfigReader& r, const std::string& key, int64_t in_channels) {
  if (r.json().contains(key) && !r.has(key)) {
    r.ignore(key.c_str(), "null means as the input channels, the constructor's rule");
    return in_channels;
  }
  return r.get_int(key, in_channels);
}
}  // namespace

Ltx2ArchConfig Ltx2ArchConfig::from_reader(ConfigReader& r) {
  Ltx2ArchConfig c;
  ignore_bookkeeping_keys(r);
  c.class_name = "LTX2VideoTransformer3DModel";
  c.in_channels = r.get_int("in_channels", 128);
  c.out_channels = channels_or(r, "out_channels", c.in_channels);
  c.patch_size = r.get_int("patch_size", 1);
  c.patch_size_t = r.get_int("patch_size_t", 1);
  c.num_attention_heads = r.get_int("num_attention_heads", 32);
  c.attention_head_dim = r.get_int("attention_head_dim", 128);
  c.cross_attention_dim = r.get_int("cross_attention_dim", 4096);
  c.vae_scale_factors = r.get_int_list("vae_scale_factors", std::vector<int64_t>{8, 32, 32});
  c.pos_embed_max_pos = r.get_int("pos_embed_max_pos", 20);
  c.base_height = r.get_int("base_height", 2048);
  c.base_width = r.get_int("base_width", 2048);
  c.gated_attn = r.get_bool("gated_attn", false);
  c.cross_attn_mod = r.get_bool("cross_attn_mod", false);
  c.audio_in_channels = r.get_int("audio_in_channels", 128);
  c.audio_out_channels = channels_or(r, "audio_out_channels", c.audio_in_channels);
  c.audio_patch_size = r.get_int("audio_patch_size", 1);
  c.audio_patch_size_t = r.get_int("audio_patch_size_t", 1);
  c.audio_num_attention_heads = r.get_int("audio_num_attention_heads", 32);
  c.audio_attention_head_dim = r.get_int("audio_attention_head_dim", 64);
  c.audio_cross_attention_dim = r.get_int("audio_cross_attention_dim", 2048);
  c.audio_scale_factor = r.get_int("audio_scale_factor", 4);
  c.audio_pos_embed_max_pos = r.get_int("audio_pos_embed_max_pos", 20);
  c.audio_sampling_rate = r.get_int("audio_sampling_rate", 16000);
  c.audio_hop_length = r.get_int("audio_hop_length", 160);
  c.audio_gated_attn = r.get_bool("audio_gated_attn", false);
  c.audio_cross_attn_mod = r.get_bool("audio_cross_attn_mod", false);
  c.num_layers = r.get_int("num_layers", 48);
  c.activation_fn = r.get_string("activation_fn", "gelu-approximate");
  c.qk_norm = r.get_string("qk_norm", "rms_norm_across_heads");
  c.norm_elementwise_affine = r.get_bool("norm_elementwise_affine", false);
  c.norm_eps = r.get_float("norm_eps", 1e-6);
  c.caption_channels = r.get_int("caption_channels", 3840);
  c.attention_bias = r.get_bool("attention_bias", true);
  c.attention_out_bias = r.get_bool("attention_out_bias", true);
  c.rope_theta = r.get_float("rope_theta", 10000.0);
  c.rope_double_precision = r.get_bool("rope_double_precision", true);
  c.causal_offset = r.get_int("causal_offset", 1);
  c.timestep_scale_multiplier = r.get_float("timestep_scale_multiplier", 1000);
  c.cross_attn_timestep_scale_multiplier = r.get_float("cross_attn_timestep_scale_multiplier", 1000);
  c.rope_type = r.get_string("rope_type", "interleaved");
  c.use_prompt_embeddings = r.get_bool("use_prompt_embeddings", true);
  c.perturbed_attn = r.get_bool("perturbed_attn", false);
  c.ff_bias = r.get_bool("ff_bias", true);
  c.audio_ff_bias = r.get_bool("audio_ff_bias", true);
  c.use_prompt_adaln_single = r.get_bool("use_prompt_adaln_single", true);
  c.use_keyframes_abs_pos_embedding = r.get_bool("use_keyframes_abs_pos_embedding", false);
  r.finish();
  c.validate(r.source());
  return c;
}

void Ltx2ArchConfig::validate(const std::string& source) {
  FASTDIT_CHECK(num_attention_heads > 0 && attention_head_dim > 0 && audio_num_attention_heads > 0 &&
                    audio_attention_head_dim > 0,
                source, ": head counts and head dims of both streams must be positive");
  FASTDIT_CHECK(num_layers >= 0, source, ": num_layers must be non-negative");
  FASTDIT_CHECK(in_channels > 0 && out_channels > 0 && audio_in_channels > 0 && audio_out_channels > 0 &&
                    caption_channels > 0 && cross_attention_dim > 0 && audio_cross_attention_dim > 0,
                source, ": channel counts and cross-attention widths must be positive");
  FASTDIT_CHECK(patch_size > 0 && patch_size_t > 0 && audio_patch_size > 0 && audio_patch_size_t > 0, source,
                ": patch sizes must be positive");
  FASTDIT_CHECK(vae_scale_factors.size() == 3, source, ": vae_scale_factors must hold 3 values (time, height, "
                "width), got ", vae_scale_factors.size());
  FASTDIT_CHECK(pos_embed_max_pos > 0 && base_height > 0 && base_width > 0 && audio_pos_embed_max_pos > 0 &&
                    audio_sampling_rate > 0 && audio_hop_length > 0,
                source, ": max positions, base sizes, audio sampling rate and hop length must be positive");
  FASTDIT_CHECK(qk_norm == "rms_norm_across_heads", source, ": qk_norm '", qk_norm,
                "' is not supported (the reference accepts only 'rms_norm_across_heads')");
  FASTDIT_CHECK(activation_fn == "gelu-approximate" || activation_fn == "gelu", source, ": activation_fn '",
                activation_fn, "' is not supported (gelu-approximate, gelu)");
  FASTDIT_CHECK(rope_type == "interleaved" || rope_type == "split", source, ": rope_type '", rope_type,
                "' must be 'interleaved' or 'split'");
  hidden_size = num_attention_heads * attention_head_dim;
  audio_hidden_size = audio_num_attention_heads * audio_attention_head_dim;
  num_channels_latents = in_channels;
  FASTDIT_CHECK(audio_cross_attention_dim == audio_hidden_size, source, ": audio_cross_attention_dim ",
                audio_cross_attention_dim, " must equal the audio width ", audio_hidden_size,
                " (it is the cross-modal RoPE width, applied to the audio-width queries and keys)");
  const auto rope_fits = [](int64_t dim, int64_t heads) { return dim % (2 * heads) == 0; };
  FASTDIT_CHECK(rope_fits(hidden_size, num_attention_heads) && rope_fits(audio_hidden_size, audio_num_attention_heads) &&
                    rope_fits(audio_hidden_size, num_attention_heads),
                source, ": the RoPE widths (", hidden_size, " video, ", audio_hidden_size,
                " audio and cross-modal) must split into an even width per head of either stream");
  if (use_prompt_embeddings || cross_attn_mod)
    FASTDIT_CHECK(cross_attention_dim == hidden_size, source, ": cross_attention_dim ", cross_attention_dim,
                  " must equal the video width ", hidden_size,
                  " (the caption projection or the prompt modulation works at that width)");
  if (use_prompt_embeddings || prompt_modulation())
    FASTDIT_CHECK(audio_cross_attention_dim == audio_hidden_size, source, ": audio_cross_attention_dim must equal "
                  "the audio width");
}

}  // namespace fastdit
