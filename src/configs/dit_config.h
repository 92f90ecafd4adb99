// Arch configs hold exactly the fields of a family's config.json (plus derived sizes).
// Sampling settings (steps, guidance, shift, fps, resolution) never live here.
#pragma once

#include <string>

#include "configs/config_reader.h"

namespace fastdit {

struct DiTArchConfig {
  virtual ~DiTArchConfig() = default;
  std::string class_name;
  // Derived, common to every family.
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t num_channels_latents = 0;

 protected:
  // Keys every diffusers config.json may carry besides the model's own fields.
  static void ignore_bookkeeping_keys(ConfigReader& reader);
};

}  // namespace fastdit
