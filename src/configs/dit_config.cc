#include "configs/dit_config.h"

namespace fastdit {

void DiTArchConfig::ignore_bookkeeping_keys(ConfigReader& reader) {
  reader.ignore("_class_name", "resolved by the registry");
  reader.ignore("_diffusers_version", "written by diffusers' save_config");
  reader.ignore("_name_or_path", "written by from_pretrained");
}

}  // namespace fastdit
