#include "configs/stable_audio_config.h"

#include "core/error.h"

namespace fastdit {

StableAudioArchConfig StableAudioArchConfig::from_reader(ConfigReader& r) {
  StableAudioArchConfig c;
  ignore_bookkeeping_keys(r);
  c.class_name = "StableAudioDiTModel";
  c.sample_size = r.get_int("sample_size", 1024);
  c.in_channels = r.get_int("in_channels", 64);
  c.num_layers = r.get_int("num_layers", 24);
  c.attention_head_dim = r.get_int("attention_head_dim", 64);
  c.num_attention_heads = r.get_int("num_attention_heads", 24);
  c.num_key_value_attention_heads = r.get_int("num_key_value_attention_heads", 12);
  c.out_channels = r.get_int("out_channels", 64);
  c.cross_attention_dim = r.get_int("cross_attention_dim", 768);
  c.time_proj_dim = r.get_int("time_proj_dim", 256);
  c.global_states_input_dim = r.get_int("global_states_input_dim", 1536);
  c.cross_attention_input_dim = r.get_int("cross_attention_input_dim", 768);
  r.finish();
  c.validate(r.source());
  return c;
}

void StableAudioArchConfig::validate(const std::string& source) {
  check_positive(source, "num_attention_heads", num_attention_heads);
  check_positive(source, "attention_head_dim", attention_head_dim);
  check_block_count(source, "num_layers", num_layers, 1);
  hidden_size = derived_width(source, "num_attention_heads", num_attention_heads, "attention_head_dim",
                              attention_head_dim);
  FASTDIT_CHECK(attention_head_dim % 4 == 0, source, ": attention_head_dim ", attention_head_dim,
                " must be a multiple of 4 (RoPE rotates pairs within the first half of each head)");
  FASTDIT_CHECK(num_key_value_attention_heads > 0 && num_attention_heads % num_key_value_attention_heads == 0,
                source, ": num_key_value_attention_heads ", num_key_value_attention_heads,
                " must divide num_attention_heads ", num_attention_heads);
  FASTDIT_CHECK(cross_attention_dim == derived_width(source, "num_key_value_attention_heads",
                                                     num_key_value_attention_heads, "attention_head_dim",
                                                     attention_head_dim),
                source,
                ": cross_attention_dim ", cross_attention_dim, " must equal num_key_value_attention_heads x "
                "attention_head_dim = ", num_key_value_attention_heads * attention_head_dim,
                " (the reference reads the K/V head count off that width)");
  FASTDIT_CHECK(time_proj_dim > 0 && time_proj_dim % 2 == 0, source, ": time_proj_dim ", time_proj_dim,
                " must be positive and even ([cos | sin] of time_proj_dim / 2 frequencies)");
  FASTDIT_CHECK(in_channels > 0 && out_channels > 0 && global_states_input_dim > 0 &&
                    cross_attention_input_dim > 0 && sample_size > 0,
                source, ": channels, global_states_input_dim, cross_attention_input_dim and sample_size must "
                "be positive");
  num_channels_latents = in_channels;
}

}  // namespace fastdit
