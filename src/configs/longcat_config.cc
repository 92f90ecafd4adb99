#include "configs/longcat_config.h"

#include "core/error.h"

namespace fastdit {

LongcatArchConfig LongcatArchConfig::from_reader(ConfigReader& r) {
  LongcatArchConfig c;
  ignore_bookkeeping_keys(r);
  c.class_name = "LongCatVideoTransformer3DModel";
  c.in_channels = r.get_int("in_channels", 16);
  c.out_channels = r.get_int("out_channels", 16);
  c.hidden_size = r.get_int("hidden_size", 4096);
  c.depth = r.get_int("depth", 48);
  c.num_attention_heads = r.get_int("num_heads", 32);
  c.caption_channels = r.get_int("caption_channels", 4096);
  c.mlp_ratio = r.get_float("mlp_ratio", 4.0);
  c.adaln_tembed_dim = r.get_int("adaln_tembed_dim", 512);
  c.frequency_embedding_size = r.get_int("frequency_embedding_size", 256);
  const auto patch = r.get_int_list("patch_size", std::vector<int64_t>{1, 2, 2});
  FASTDIT_CHECK(patch.size() == 3, r.source(), ": patch_size must list 3 sizes (t, h, w), got ", patch.size());
  c.patch_size = {patch[0], patch[1], patch[2]};
  r.get_bool("enable_flashattn3", false);
  r.get_bool("enable_flashattn2", false);
  r.get_bool("enable_xformers", false);
  FASTDIT_CHECK(!r.get_bool("enable_bsa", false), r.source(),
                ": enable_bsa is true, but block-sparse attention (the reference's Triton BSA kernels for the "
                "720p refinement stage) is not implemented here; set it to false for dense attention");
  r.ignore("bsa_params", "block-sparse attention's parameters; only read when enable_bsa is true, which is refused");
  if (r.has("cp_split_hw")) c.cp_split_hw = r.get_int_list("cp_split_hw");
  else r.ignore("cp_split_hw", "null: no context-parallel split of the H x W grid");
  c.text_tokens_zero_pad = r.get_bool("text_tokens_zero_pad", false);
  r.finish();
  c.validate(r.source());
  return c;
}

void LongcatArchConfig::validate(const std::string& source) {
  FASTDIT_CHECK(in_channels > 0 && out_channels > 0 && caption_channels > 0, source,
                ": in_channels, out_channels and caption_channels must be positive");
  FASTDIT_CHECK(num_attention_heads > 0 && hidden_size > 0 && hidden_size % num_attention_heads == 0, source,
                ": hidden_size ", hidden_size, " must be a positive multiple of num_heads ", num_attention_heads);
  head_dim = hidden_size / num_attention_heads;
  FASTDIT_CHECK(head_dim % 8 == 0, source, ": the head dim hidden_size / num_heads = ", head_dim,
                " must be a multiple of 8 (the reference's 3-D RoPE asserts it)");
  FASTDIT_CHECK(depth > 0 && adaln_tembed_dim > 0, source, ": depth and adaln_tembed_dim must be positive");
  FASTDIT_CHECK(frequency_embedding_size > 0 && frequency_embedding_size % 2 == 0, source,
                ": frequency_embedding_size ", frequency_embedding_size, " must be positive and even");
  FASTDIT_CHECK(patch_size[0] == 1 && patch_size[1] > 0 && patch_size[2] > 0, source,
                ": patch_size must be [1, h, w] (the reference asserts the temporal patch is 1), got [",
                patch_size[0], ", ", patch_size[1], ", ", patch_size[2], "]");
  FASTDIT_CHECK(cp_split_hw.size() == 2 && cp_split_hw[0] > 0 && cp_split_hw[1] > 0, source,
                ": cp_split_hw must be two positive split counts [h, w]");
  FASTDIT_CHECK(mlp_ratio > 0, source, ": mlp_ratio must be positive");
  // FeedForwardSwiGLU(dim, hidden_dim=int(D * mlp_ratio)): 2/3 of it, rounded up to 256.
  const auto hidden = static_cast<int64_t>(static_cast<double>(hidden_size) * mlp_ratio);
  const int64_t two_thirds = static_cast<int64_t>(2.0 * static_cast<double>(hidden) / 3.0);
  ffn_hidden = 256 * ((two_thirds + 255) / 256);
  num_channels_latents = in_channels;
}

}  // namespace fastdit
