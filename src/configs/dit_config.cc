#include "configs/dit_config.h"

#include <cmath>

#include "core/checked_math.h"
#include "core/error.h"

namespace fastdit {

void DiTArchConfig::ignore_bookkeeping_keys(ConfigReader& reader) {
  reader.ignore("_class_name", "resolved by the registry");
  reader.ignore("_diffusers_version", "written by diffusers' save_config");
  reader.ignore("_name_or_path", "written by from_pretrained");
}

int64_t DiTArchConfig::derived_width(const std::string& source, const char* a_name, int64_t a, const char* b_name,
                                     int64_t b) {
  const auto product = checked_mul(a, b);
  FASTDIT_CHECK(product && *product <= kMaxConfigInt, source, ": ", a_name, " = ", a, " x ", b_name, " = ", b,
                " is out of range (widths are at most 2^31 = ", kMaxConfigInt, ")");
  return *product;
}

void DiTArchConfig::check_block_count(const std::string& source, const char* name, int64_t value, int64_t minimum) {
  FASTDIT_CHECK(value >= minimum && value <= kMaxBlocks, source, ": ", name, " = ", value, " must lie in [", minimum,
                ", ", kMaxBlocks, "] (a count of transformer blocks)");
}

void DiTArchConfig::check_positive(const std::string& source, const char* name, int64_t value) {
  FASTDIT_CHECK(value > 0, source, ": ", name, " = ", value, " must be positive");
}

void DiTArchConfig::check_eps(const std::string& source, const char* name, double value) {
  FASTDIT_CHECK(std::isfinite(value) && value > 0, source, ": ", name, " = ", value,
                " must be a positive finite number (a norm's epsilon)");
}

}  // namespace fastdit
