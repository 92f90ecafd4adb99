#include "core/library_versions.h"

#include <vector>

namespace fastdit {
namespace {
// A function-local static: providers register from other translation units' static
// initialisers, whose order relative to this file's is unspecified.
std::vector<LibraryVersionProvider>& providers() {
  static std::vector<LibraryVersionProvider> list;
  return list;
}
}  // namespace

void register_library_version_provider(LibraryVersionProvider provider) {
  providers().push_back(provider);
}

LibraryVersions library_versions() {
  LibraryVersions versions;
  for (LibraryVersionProvider provider : providers()) provider(versions);
  return versions;
}

}  // namespace fastdit
