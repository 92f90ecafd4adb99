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

  // Checks every family's validate() shares, each an error `<source>: <field> = <value> ...`.
  // A width derived as a product (hidden size = heads x head dim), bounded as config sizes are.
  static int64_t derived_width(const std::string& source, const char* a_name, int64_t a, const char* b_name,
                               int64_t b);
  // A block count: 0 (or `minimum`) to kMaxBlocks.
  static void check_block_count(const std::string& source, const char* name, int64_t value, int64_t minimum = 0);
  // A size that must be positive (a width, a channel count, a patch size).
  static void check_positive(const std::string& source, const char* name, int64_t value);
  // A norm epsilon: finite and positive.
  static void check_eps(const std::string& source, const char* name, double value);

 public:
  // The most transformer blocks a config may ask for (every released DiT has under 100).
  static constexpr int64_t kMaxBlocks = 1024;
};

}  // namespace fastdit
