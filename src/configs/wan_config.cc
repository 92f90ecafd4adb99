#include "configs/wan_config.h"

#include "core/error.h"

namespace fastdit {

WanArchConfig WanArchConfig::from_reader(ConfigReader& r) {
  WanArchConfig c;
  ignore_bookkeeping_keys(r);
  c.class_name = "WanTransformer3DModel";
  const auto patch = r.get_int_list("patch_size", std::vector<int64_t>{1, 2, 2});
  FASTDIT_CHECK(patch.size() == 3, r.source(), ": patch_size must have 3 entries (t, h, w)");
  for (int i = 0; i < 3; ++i) {
    FASTDIT_CHECK(patch[i] > 0, r.source(), ": patch_size entries must be positive");
    c.patch_size[i] = patch[i];
  }
  c.num_attention_heads = r.get_int("num_attention_heads", 40);
  c.attention_head_dim = r.get_int("attention_head_dim", 128);
  c.in_channels = r.get_int("in_channels", 16);
  c.out_channels = r.get_int("out_channels", 16);
  c.text_dim = r.get_int("text_dim", 4096);
  c.freq_dim = r.get_int("freq_dim", 256);
  c.ffn_dim = r.get_int("ffn_dim", 13824);
  c.num_layers = r.get_int("num_layers", 40);
  c.cross_attn_norm = r.get_bool("cross_attn_norm", true);
  if (r.json().contains("qk_norm")) c.qk_norm = r.get_optional_string("qk_norm");
  c.eps = r.get_float("eps", 1e-6);
  c.image_dim = r.get_optional_int("image_dim");
  c.added_kv_proj_dim = r.get_optional_int("added_kv_proj_dim");
  c.rope_max_seq_len = r.get_int("rope_max_seq_len", 1024);
  c.pos_embed_seq_len = r.get_optional_int("pos_embed_seq_len");
  r.finish();

  FASTDIT_CHECK(c.num_attention_heads > 0 && c.attention_head_dim > 0 && c.num_layers >= 0,
                r.source(), ": num_attention_heads, attention_head_dim must be positive");
  FASTDIT_CHECK(c.attention_head_dim % 2 == 0, r.source(), ": attention_head_dim ",
                c.attention_head_dim, " must be even for rotary embedding");
  FASTDIT_CHECK(!c.qk_norm || *c.qk_norm == "rms_norm_across_heads", r.source(), ": qk_norm '",
                *c.qk_norm, "' is not supported (only rms_norm_across_heads or null)");
  FASTDIT_CHECK(c.freq_dim > 0 && c.freq_dim % 2 == 0, r.source(), ": freq_dim must be even");
  c.hidden_size = c.num_attention_heads * c.attention_head_dim;
  if (c.out_channels == 0) c.out_channels = c.in_channels;
  c.num_channels_latents = c.out_channels;
  return c;
}

}  // namespace fastdit
