// One check macro per library the CUDA backend calls. Each throws fastdit::Error naming
// the failing call, its file and line, and the library's own message. The macros name
// library functions (cublasLtGetStatusString, ...) only where they expand, so this header
// needs none of the library headers.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

namespace fastdit::cuda::detail {

[[noreturn]] void fail_call(const char* file, int line, const char* call, const char* library,
                            int status, const std::string& message);

// cudnnGetErrorString plus cudnnGetLastErrorString, which says why most NOT_SUPPORTEDs happen.
std::string cudnn_status_message(int status);

}  // namespace fastdit::cuda::detail

#define FASTDIT_CUDA_CHECK(call)                                               \
  do {                                                                         \
    const cudaError_t fastdit_status_ = (call);                                \
    if (fastdit_status_ != cudaSuccess) [[unlikely]]                           \
      ::fastdit::cuda::detail::fail_call(__FILE__, __LINE__, #call, "CUDA",    \
                                         static_cast<int>(fastdit_status_),    \
                                         cudaGetErrorString(fastdit_status_)); \
  } while (0)

// After a kernel launch: a bad launch configuration surfaces here.
#define FASTDIT_CUDA_CHECK_LAUNCH() FASTDIT_CUDA_CHECK(cudaGetLastError())

#define FASTDIT_CUBLAS_CHECK(call)                                                  \
  do {                                                                              \
    const cublasStatus_t fastdit_status_ = (call);                                  \
    if (fastdit_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                      \
      ::fastdit::cuda::detail::fail_call(__FILE__, __LINE__, #call, "cuBLAS",       \
                                         static_cast<int>(fastdit_status_),         \
                                         cublasLtGetStatusString(fastdit_status_)); \
  } while (0)

#define FASTDIT_CUDNN_CHECK(call)                                                            \
  do {                                                                                       \
    const cudnnStatus_t fastdit_status_ = (call);                                            \
    if (fastdit_status_ != CUDNN_STATUS_SUCCESS) [[unlikely]]                                \
      ::fastdit::cuda::detail::fail_call(                                                    \
          __FILE__, __LINE__, #call, "cuDNN", static_cast<int>(fastdit_status_),             \
          ::fastdit::cuda::detail::cudnn_status_message(static_cast<int>(fastdit_status_))); \
  } while (0)
