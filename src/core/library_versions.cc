#include "core/library_versions.h"

#include <vector>

namespace fastdit {
// The built-in backends' parts, called explicitly (backends/*/library_versions.cc).
namespace cpu {
void add_library_versions(LibraryVersions& versions);
}  // namespace cpu
#ifdef FASTDIT_WITH_CUDA
namespace cuda {
void add_library_versions(LibraryVersions& versions);
}  // namespace cuda
#endif

namespace {
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
  cpu::add_library_versions(versions);
#ifdef FASTDIT_WITH_CUDA
  cuda::add_library_versions(versions);
#endif
  for (LibraryVersionProvider provider : providers()) provider(versions);
  return versions;
}

}  // namespace fastdit
