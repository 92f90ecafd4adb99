#include "configs/flux_config.h"

#include <numeric>

#include "core/error.h"

namespace fastdit {

FluxArchConfig FluxArchConfig::from_reader(ConfigReader& r) {
  FluxArchConfig c;
  ignore_bookkeeping_keys(r);
  c.class_name = "FluxTransformer2DModel";
  c.patch_size = r.get_int("patch_size", 1);
  c.in_channels = r.get_int("in_channels", 64);
  c.num_layers = r.get_int("num_layers", 19);
  c.num_single_layers = r.get_int("num_single_layers", 38);
  c.attention_head_dim = r.get_int("attention_head_dim", 128);
  c.num_attention_heads = r.get_int("num_attention_heads", 24);
  c.joint_attention_dim = r.get_int("joint_attention_dim", 4096);
  c.pooled_projection_dim = r.get_int("pooled_projection_dim", 768);
  c.guidance_embeds = r.get_bool("guidance_embeds", false);
  c.axes_dims_rope = r.get_int_list("axes_dims_rope", std::vector<int64_t>{16, 56, 56});
  if (r.json().contains("out_channels") && !r.has("out_channels")) {
    r.ignore("out_channels", "null means as in_channels, the constructor's rule");
    c.out_channels = c.in_channels;
  } else {
    c.out_channels = r.get_int("out_channels", c.in_channels);
  }
  r.finish();
  c.validate(r.source());
  return c;
}

void FluxArchConfig::validate(const std::string& source) {
  check_positive(source, "num_attention_heads", num_attention_heads);
  check_positive(source, "attention_head_dim", attention_head_dim);
  hidden_size = derived_width(source, "num_attention_heads", num_attention_heads, "attention_head_dim",
                              attention_head_dim);
  check_block_count(source, "num_layers", num_layers);
  check_block_count(source, "num_single_layers", num_single_layers);
  FASTDIT_CHECK(num_layers + num_single_layers > 0, source,
                ": num_layers and num_single_layers must be non-negative, and not both zero");
  FASTDIT_CHECK(patch_size > 0 && in_channels > 0 && out_channels > 0 && joint_attention_dim > 0 &&
                    pooled_projection_dim > 0,
                source, ": patch_size, channels, joint_attention_dim and pooled_projection_dim must be positive");
  FASTDIT_CHECK(!axes_dims_rope.empty(), source, ": axes_dims_rope must name at least one axis");
  for (int64_t d : axes_dims_rope)
    FASTDIT_CHECK(d > 0 && d % 2 == 0, source, ": axes_dims_rope entry ", d, " must be positive and even");
  const int64_t rotary = std::accumulate(axes_dims_rope.begin(), axes_dims_rope.end(), int64_t{0});
  FASTDIT_CHECK(rotary == attention_head_dim, source, ": axes_dims_rope sums to ", rotary,
                ", not attention_head_dim ", attention_head_dim, " (the rotary table covers the whole head)");
  num_channels_latents = in_channels;
}

}  // namespace fastdit
