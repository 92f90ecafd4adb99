#pragma once

#include <array>

#include "configs/dit_config.h"

namespace fastdit {

// The official LongCat-Video DiT config (LongCatVideoTransformer3DModel, the `dit/`
// folder's config.json). Defaults are the constructor's, which are the released 13.6 B
// model's. The attention switches are the reference's choice of kernel and are accepted
// for what they are (fastdit picks its own kernels): enable_flashattn3/2, enable_xformers;
// block-sparse attention (enable_bsa) is refused until it is implemented; cp_split_hw is the
// reference's context-parallel split of the H x W grid over GPUs, which here is the run's
// --sp choice and not the model's.
struct LongcatArchConfig : DiTArchConfig {
  int64_t depth = 48;
  int64_t caption_channels = 4096;
  double mlp_ratio = 4;
  int64_t adaln_tembed_dim = 512;  // the time embedding's width (narrower than hidden_size)
  int64_t frequency_embedding_size = 256;
  std::array<int64_t, 3> patch_size{1, 2, 2};
  bool text_tokens_zero_pad = false;
  std::vector<int64_t> cp_split_hw{1, 1};
  // Derived.
  int64_t head_dim = 0;
  int64_t ffn_hidden = 0;  // FeedForwardSwiGLU: 256 * ceil(int(2 * int(D * mlp_ratio) / 3) / 256)

  static LongcatArchConfig from_reader(ConfigReader& reader);

 private:
  void validate(const std::string& source);
};

}  // namespace fastdit
