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
  c.validate(r.source());
  return c;
}

WanArchConfig WanArchConfig::from_original_reader(ConfigReader& r) {
  WanArchConfig c;
  ignore_bookkeeping_keys(r);
  c.class_name = "WanModel";
  const int64_t dim = r.get_int("dim", 2048);
  c.num_attention_heads = r.get_int("num_heads", 16);
  FASTDIT_CHECK(c.num_attention_heads > 0 && dim % c.num_attention_heads == 0, r.source(), ": dim ", dim,
                " is not a multiple of num_heads ", c.num_attention_heads);
  c.attention_head_dim = dim / c.num_attention_heads;
  c.in_channels = r.get_int("in_dim", 16);
  c.out_channels = r.get_int("out_dim", 16);
  c.ffn_dim = r.get_int("ffn_dim", 8192);
  c.freq_dim = r.get_int("freq_dim", 256);
  c.num_layers = r.get_int("num_layers", 32);
  c.eps = r.get_float("eps", 1e-6);
  c.text_dim = r.get_int("text_dim", 4096);
  FASTDIT_CHECK(r.get_int("text_len", 512) == 512, r.source(), ": text_len must be 512 (the Wan text context)");
  FASTDIT_CHECK(r.get_bool("qk_norm", true), r.source(), ": qk_norm false is not supported");
  c.cross_attn_norm = r.get_bool("cross_attn_norm", true);
  const auto window = r.get_int_list("window_size", std::vector<int64_t>{-1, -1});
  FASTDIT_CHECK(window == (std::vector<int64_t>{-1, -1}), r.source(), ": windowed attention (window_size) is not supported");
  const auto patch = r.get_int_list("patch_size", std::vector<int64_t>{1, 2, 2});
  FASTDIT_CHECK(patch.size() == 3, r.source(), ": patch_size must have 3 entries (t, h, w)");
  std::copy(patch.begin(), patch.end(), c.patch_size.begin());
  const std::string type = r.get_string("model_type", "t2v");
  if (type == "i2v" || type == "flf2v") {
    c.image_dim = 1280;  // the original MLPProj input (CLIP ViT-H) is fixed
    c.added_kv_proj_dim = dim;
    if (type == "flf2v") c.pos_embed_seq_len = 2 * 257;
  } else {
    FASTDIT_CHECK(type == "t2v" || type == "ti2v", r.source(), ": unknown model_type '", type,
                  "' (expected t2v, i2v, flf2v or ti2v)");
  }
  r.finish();
  c.validate(r.source());
  return c;
}

void WanArchConfig::validate(const std::string& source) {
  check_positive(source, "num_attention_heads", num_attention_heads);
  check_positive(source, "attention_head_dim", attention_head_dim);
  check_block_count(source, "num_layers", num_layers);
  for (int64_t p : patch_size) check_positive(source, "patch_size entry", p);
  check_eps(source, "eps", eps);
  check_positive(source, "rope_max_seq_len", rope_max_seq_len);
  for (const auto& [name, value] : {std::pair{"image_dim", image_dim}, std::pair{"added_kv_proj_dim", added_kv_proj_dim},
                                    std::pair{"pos_embed_seq_len", pos_embed_seq_len}})
    if (value) check_positive(source, name, *value);
  FASTDIT_CHECK(attention_head_dim % 2 == 0, source, ": attention_head_dim ", attention_head_dim,
                " must be even for rotary embedding");
  FASTDIT_CHECK(!qk_norm || *qk_norm == "rms_norm_across_heads", source, ": qk_norm '", *qk_norm,
                "' is not supported (only rms_norm_across_heads or null)");
  FASTDIT_CHECK(freq_dim > 0 && freq_dim % 2 == 0, source, ": freq_dim must be even");
  FASTDIT_CHECK(in_channels > 0 && text_dim >= 0 && ffn_dim > 0, source,
                ": in_channels and ffn_dim must be positive");
  hidden_size = derived_width(source, "num_attention_heads", num_attention_heads, "attention_head_dim",
                              attention_head_dim);
  if (out_channels == 0) out_channels = in_channels;
  num_channels_latents = out_channels;
}

}  // namespace fastdit
