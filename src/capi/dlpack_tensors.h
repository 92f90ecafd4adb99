// Tensors across the C API: a borrowed DLTensor as a fastdit Tensor view, and a fastdit
// Tensor handed out as a DLManagedTensor that keeps its storage alive.
#pragma once

#include <dlpack/dlpack.h>

#include <string>

#include "core/tensor.h"

namespace fastdit::capi {

// A view over the caller's memory (no copy, nothing owned); `what` names it in errors,
// which are InvalidArgument for what DLPack allows and fastdit cannot read.
Tensor view_of(const DLTensor& tensor, const std::string& what);

// Hands `tensor` out. On a device with streams, its deleter orders the device's later
// reuse of the memory after what `stream` holds when the deleter runs.
DLManagedTensor* hand_out(Tensor tensor, void* stream);

// The call is malformed (fastdit_status FASTDIT_ERROR_INVALID_ARGUMENT).
class InvalidArgument : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace fastdit::capi
