// Versions of the libraries a backend runs on (GPU driver, CUDA runtime, cuDNN, NCCL, …),
// for the software fingerprint of benchmark records. The built-in backends' entries come
// from their add_library_versions (called explicitly; a build without a backend reports
// nothing for its names); an embedding program may register more providers.
#pragma once

#include <map>
#include <string>

namespace fastdit {

using LibraryVersions = std::map<std::string, std::string>;  // name -> version text
// Adds (or overwrites) entries, e.g. versions["cudnn"] = "9.14.0".
using LibraryVersionProvider = void (*)(LibraryVersions& versions);

void register_library_version_provider(LibraryVersionProvider provider);
// Every registered provider's entries, in registration order (a later one wins).
LibraryVersions library_versions();

}  // namespace fastdit
