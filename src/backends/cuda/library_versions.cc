// The CUDA backend's part of the benchmark software fingerprint: driver, runtime, cuBLASLt,
// cuDNN (as loaded at run time, which may differ from the headers built against) and, when
// the build has it, NCCL.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "core/library_versions.h"

#ifdef FASTDIT_WITH_NCCL
#include <nccl.h>
#endif

namespace fastdit::cuda {
namespace {

// 13000 -> "13.0"; cuDNN and NCCL codes have their own layouts.
std::string cuda_version_text(int code) { return std::to_string(code / 1000) + "." + std::to_string(code % 1000 / 10); }

}  // namespace

void add_library_versions(LibraryVersions& versions) {
  int driver = 0, runtime = 0;
  if (cudaDriverGetVersion(&driver) == cudaSuccess) versions["cuda_driver"] = cuda_version_text(driver);
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) versions["cuda_runtime"] = cuda_version_text(runtime);
  versions["cublaslt"] = std::to_string(cublasLtGetVersion());
  const size_t cudnn = cudnnGetVersion();  // major*10000 + minor*100 + patch since cuDNN 9
  versions["cudnn"] = std::to_string(cudnn / 10000) + "." + std::to_string(cudnn / 100 % 100) + "." +
                      std::to_string(cudnn % 100);
#ifdef FASTDIT_WITH_NCCL
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess)
    versions["nccl"] = std::to_string(nccl / 10000) + "." + std::to_string(nccl / 100 % 100) + "." +
                       std::to_string(nccl % 100);
#endif
}

}  // namespace fastdit::cuda
