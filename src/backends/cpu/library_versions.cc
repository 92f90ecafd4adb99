// The CPU backend's part of the benchmark software fingerprint: the OpenBLAS build
// (version, kernel target, threading), which decides the speed of every CPU GEMM.
#include <cblas.h>

#include "core/library_versions.h"

namespace fastdit::cpu {
namespace {

void add_openblas_version(LibraryVersions& versions) { versions["openblas"] = openblas_get_config(); }

const bool registered = (register_library_version_provider(add_openblas_version), true);

}  // namespace
}  // namespace fastdit::cpu
