#include "configs/sd3_config.h"

#include <algorithm>

#include "core/error.h"

namespace fastdit {

bool SD3ArchConfig::dual_attention(int64_t layer) const {
  return std::find(dual_attention_layers.begin(), dual_attention_layers.end(), layer) !=
         dual_attention_layers.end();
}

SD3ArchConfig SD3ArchConfig::from_reader(ConfigReader& r) {
  SD3ArchConfig c;
  ignore_bookkeeping_keys(r);
  c.class_name = "SD3Transformer2DModel";
  c.sample_size = r.get_int("sample_size", 128);
  c.patch_size = r.get_int("patch_size", 2);
  c.in_channels = r.get_int("in_channels", 16);
  c.num_layers = r.get_int("num_layers", 18);
  c.attention_head_dim = r.get_int("attention_head_dim", 64);
  c.num_attention_heads = r.get_int("num_attention_heads", 18);
  c.joint_attention_dim = r.get_int("joint_attention_dim", 4096);
  c.caption_projection_dim = r.get_int("caption_projection_dim", 1152);
  c.pooled_projection_dim = r.get_int("pooled_projection_dim", 2048);
  const auto is_null = [&](const char* key) { return r.json().contains(key) && !r.has(key); };
  if (is_null("out_channels")) {
    r.ignore("out_channels", "null means as in_channels, the constructor's rule");
    c.out_channels = c.in_channels;
  } else {
    c.out_channels = r.get_int("out_channels", 16);
  }
  FASTDIT_CHECK(!is_null("pos_embed_max_size"), r.source(), ": pos_embed_max_size null is not supported "
                "(the position table would not be in the checkpoint; every SD3 release sets it)");
  c.pos_embed_max_size = r.get_int("pos_embed_max_size", 96);
  c.dual_attention_layers = r.get_int_list("dual_attention_layers", std::vector<int64_t>{});
  c.qk_norm = r.get_optional_string("qk_norm");
  r.finish();
  c.validate(r.source());
  return c;
}

void SD3ArchConfig::validate(const std::string& source) {
  check_positive(source, "num_attention_heads", num_attention_heads);
  check_positive(source, "attention_head_dim", attention_head_dim);
  check_block_count(source, "num_layers", num_layers, 1);
  hidden_size = derived_width(source, "num_attention_heads", num_attention_heads, "attention_head_dim",
                              attention_head_dim);
  FASTDIT_CHECK(caption_projection_dim == hidden_size, source, ": caption_projection_dim ", caption_projection_dim,
                " must equal num_attention_heads x attention_head_dim = ", hidden_size,
                " (the context stream shares the image stream's width)");
  FASTDIT_CHECK(patch_size > 0 && in_channels > 0 && out_channels > 0 && joint_attention_dim > 0 &&
                    pooled_projection_dim > 0 && sample_size > 0,
                source, ": patch_size, channels, joint_attention_dim, pooled_projection_dim and "
                "sample_size must be positive");
  FASTDIT_CHECK(pos_embed_max_size > 0, source, ": pos_embed_max_size must be positive");
  derived_width(source, "pos_embed_max_size", pos_embed_max_size, "pos_embed_max_size", pos_embed_max_size);
  for (int64_t layer : dual_attention_layers)
    FASTDIT_CHECK(layer >= 0 && layer < num_layers, source, ": dual_attention_layers entry ", layer,
                  " is not a block index (num_layers ", num_layers, ")");
  FASTDIT_CHECK(!qk_norm || *qk_norm == "rms_norm", source, ": qk_norm '", qk_norm.value_or(""),
                "' is not supported (only rms_norm or null, as SD3 releases use)");
  num_channels_latents = in_channels;
}

}  // namespace fastdit
