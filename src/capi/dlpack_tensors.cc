#include "capi/dlpack_tensors.h"

#include <memory>

namespace fastdit::capi {
namespace {

// DLPack 0.8's bool code; the 0.6 header Debian ships predates it, and PyTorch 2 exports
// bool tensors with it.
constexpr uint8_t kDLBoolCode = 6;

struct Code {
  DType dtype;
  uint8_t code;
  uint8_t bits;
};

constexpr Code kCodes[] = {
    {DType::Float32, kDLFloat, 32}, {DType::Float64, kDLFloat, 64},  {DType::Float16, kDLFloat, 16},
    {DType::BFloat16, kDLBfloat, 16}, {DType::Int8, kDLInt, 8},      {DType::Int16, kDLInt, 16},
    {DType::Int32, kDLInt, 32},     {DType::Int64, kDLInt, 64},      {DType::UInt8, kDLUInt, 8},
    {DType::UInt16, kDLUInt, 16},   {DType::UInt32, kDLUInt, 32},    {DType::UInt64, kDLUInt, 64},
    {DType::Bool, kDLBoolCode, 8},
};

DType dtype_of(const DLDataType& type, const std::string& what) {
  if (type.lanes != 1)
    throw InvalidArgument(what + ": vector dtypes (DLPack lanes " + std::to_string(type.lanes) +
                          ") are not supported");
  for (const Code& c : kCodes)
    if (c.code == type.code && c.bits == type.bits) return c.dtype;
  throw InvalidArgument(what + ": DLPack dtype code " + std::to_string(type.code) + " with " +
                        std::to_string(type.bits) + " bits has no fastdit dtype");
}

DLDataType dl_type_of(DType dtype) {
  for (const Code& c : kCodes)
    if (c.dtype == dtype) return {c.code, c.bits, 1};
  throw InvalidArgument(std::string("a ") + dtype_name(dtype) +
                        " tensor cannot leave through DLPack 0.6 (no code for it); read it widened to float32");
}

Device device_of(const DLDevice& device, const std::string& what) {
  switch (device.device_type) {
    case kDLCPU:
    case kDLCUDAHost:  // pinned host memory: the CPU reads it in place
      return Device::cpu();
    case kDLCUDA:
      return Device::cuda(device.device_id);
    default:
      throw InvalidArgument(what + ": DLPack device type " + std::to_string(device.device_type) +
                            " is not supported (CPU, CUDA host or CUDA memory only)");
  }
}

struct Handed {
  DLManagedTensor managed{};
  Tensor tensor;
  Shape shape, strides;
  void* stream = nullptr;
};

void release(DLManagedTensor* managed) {
  auto* handed = static_cast<Handed*>(managed->manager_ctx);
  // A deleter cannot report failure; an error ordering the streams leaves the block to
  // the allocator as it would be without a caller's stream.
  try {
    device_wait_stream(handed->tensor.device(), handed->stream);
  } catch (...) {
  }
  delete handed;
}

}  // namespace

Tensor view_of(const DLTensor& t, const std::string& what) {
  if (t.ndim < 0) throw InvalidArgument(what + ": negative ndim");
  if (t.ndim > 0 && !t.shape) throw InvalidArgument(what + ": null shape");
  Shape shape(t.shape, t.shape + t.ndim);
  Shape strides = t.strides ? Shape(t.strides, t.strides + t.ndim) : contiguous_strides(shape);
  for (int i = 0; i < t.ndim; ++i) {
    if (shape[i] < 0 || strides[i] < 0)
      throw InvalidArgument(what + ": shape " + shape_str(shape) + " strides " + shape_str(strides) +
                            ": negative sizes and strides are not supported");
  }
  const DType dtype = dtype_of(t.dtype, what);
  if (!t.data && shape_numel(shape) > 0) throw InvalidArgument(what + ": null data");
  if (t.byte_offset % dtype_size(dtype) != 0) throw InvalidArgument(what + ": byte_offset not a whole element");
  void* data = static_cast<char*>(t.data) + t.byte_offset;
  return Tensor::from_blob(data, std::move(shape), std::move(strides), dtype, device_of(t.device, what), nullptr);
}

DLManagedTensor* hand_out(Tensor tensor, void* stream) {
  auto handed = std::make_unique<Handed>();
  const DLDataType type = dl_type_of(tensor.dtype());
  handed->shape = tensor.shape();
  handed->strides = tensor.strides();
  handed->stream = stream;
  DLTensor& dl = handed->managed.dl_tensor;
  dl.data = tensor.data_ptr();
  dl.device = tensor.device().is_cuda() ? DLDevice{kDLCUDA, tensor.device().index} : DLDevice{kDLCPU, 0};
  dl.ndim = static_cast<int32_t>(handed->shape.size());
  dl.dtype = type;
  dl.shape = handed->shape.data();
  dl.strides = handed->strides.data();
  dl.byte_offset = 0;
  handed->tensor = std::move(tensor);
  handed->managed.manager_ctx = handed.get();
  handed->managed.deleter = release;
  return &handed.release()->managed;
}

}  // namespace fastdit::capi
