// The CPU backend's part of the benchmark software fingerprint: the OpenBLAS build
// (version, kernel target, threading), which decides the speed of every CPU GEMM.
#include <cblas.h>

#include "core/library_versions.h"

namespace fastdit::cpu {

void add_library_versions(LibraryVersions& versions) { versions["openblas"] = openblas_get_config(); }

}  // namespace fastdit::cpu
