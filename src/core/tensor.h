// Tensor: dtype, shape, strides and device over shared storage. Views (reshape of a
// contiguous tensor, narrow, permute, unsqueeze) share storage; everything else
// allocates. Strides and offsets are in elements.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace fastdit {

using Shape = std::vector<int64_t>;

std::string shape_str(std::span<const int64_t> shape);  // "[1, 4096, 1536]"
int64_t shape_numel(std::span<const int64_t> shape);
Shape contiguous_strides(std::span<const int64_t> shape);

class Tensor;

// What a device backend provides to core. The CPU one is built in; the CUDA backend's are
// installed explicitly on the first CUDA request (cuda::register_device_hooks).
struct DeviceHooks {
  void* (*allocate)(size_t nbytes, int index);
  void (*deallocate)(void* ptr, size_t nbytes, int index);
  // Contiguous bytes between this device and the CPU, or within this device.
  void (*copy_bytes)(void* dst, Device dst_device, const void* src, Device src_device,
                     size_t nbytes);
  void (*fill_zero)(void* ptr, size_t nbytes, int index);
  // dst contiguous, same shape and device as src; src any strides; dtypes may differ.
  void (*copy_convert)(Tensor& dst, const Tensor& src);
  // Optional (may be null): wait for queued work; memory in use and its peak since the
  // last reset, in bytes.
  void (*synchronize)(int index) = nullptr;
  void (*memory_stats)(int index, size_t* in_use, size_t* peak) = nullptr;
  void (*reset_peak_memory)(int index) = nullptr;
  std::string (*describe)(int index) = nullptr;  // e.g. "NVIDIA H100 80GB HBM3"
  // Optional device graphs (core/device_graph.h): record the work `body` queues on the
  // device into an opaque graph (nothing runs), queue one replay of it, free it.
  void* (*capture_graph)(int index, const std::function<void()>& body) = nullptr;
  void (*replay_graph)(void* graph) = nullptr;
  void (*destroy_graph)(void* graph) = nullptr;
  // Optional ordering against a queue someone else owns (a caller's CUDA stream, as void*):
  // the device's later work waits for what `stream` holds now, or `stream`'s later work
  // waits for what the device holds now. Null where a device runs everything in order.
  void (*device_wait_stream)(int index, void* stream) = nullptr;
  void (*stream_wait_device)(int index, void* stream) = nullptr;
};
// Helpers over the optional hooks (no-ops / zeros where a device has none).
void synchronize(Device device);
struct MemoryStats {
  size_t in_use = 0;
  size_t peak = 0;
};
MemoryStats memory_stats(Device device);
void reset_peak_memory(Device device);
std::string describe_device(Device device);
void device_wait_stream(Device device, void* stream);
void stream_wait_device(Device device, void* stream);
void register_device_hooks(DeviceType type, const DeviceHooks* hooks);
const DeviceHooks& device_hooks(DeviceType type);  // throws when the backend is not built

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(Shape shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(Shape shape, DType dtype, Device device = Device::cpu());
  // A tensor over memory someone else owns; `owner` keeps it alive.
  static Tensor from_blob(void* data, Shape shape, DType dtype, Device device,
                          std::shared_ptr<void> owner);
  // The same laid out with the given element strides (non-negative), e.g. a DLPack view.
  static Tensor from_blob(void* data, Shape shape, Shape strides, DType dtype, Device device,
                          std::shared_ptr<void> owner);
  // A CPU tensor holding a copy of `values`.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, Shape shape);
  static Tensor scalar(float value) { return from_vector<float>({value}, {}); }

  bool defined() const { return static_cast<bool>(storage_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  // Negative dims count from the end.
  int64_t size(int64_t dim) const;
  int64_t numel() const { return shape_numel(shape_); }
  size_t element_size() const { return dtype_size(dtype_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const;
  std::string str() const;  // "float32[2, 3] cpu"

  // Address of element 0 (storage base + offset).
  void* data_ptr() const;
  template <class T>
  T* data() const;  // checks dtype matches T (uint16_t for bfloat16/float16 storage)

  // Views.
  Tensor reshape(Shape shape) const;  // one dim may be -1; copies when not contiguous
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor permute(std::span<const int64_t> dims) const;
  Tensor permute(std::initializer_list<int64_t> dims) const {
    return permute(std::span<const int64_t>(dims.begin(), dims.size()));
  }
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;  // the dim must have size 1

  // Copies.
  Tensor contiguous() const;  // self when already contiguous
  Tensor clone() const;
  Tensor to(DType dtype) const;  // self when already that dtype
  Tensor to(Device device) const;
  Tensor to(Device device, DType dtype) const;
  void copy_(const Tensor& src);  // same shape; any dtype, device, strides

  // Element access for tests and small host-side work (CPU only, converts to float).
  float item() const;
  std::vector<float> to_float_vector() const;

 private:
  std::shared_ptr<void> storage_;  // base of the allocation (or of the borrowed blob)
  size_t storage_bytes_ = 0;
  int64_t offset_ = 0;
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::Float32;
  Device device_;

  int64_t normalize_dim(int64_t dim, int64_t rank) const;
};

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, Shape shape) {
  FASTDIT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ",
                values.size(), " values for shape ", shape_str(shape));
  DType dtype = dtype_of<T>();
  Tensor out = empty(std::move(shape), dtype);
  std::copy(values.begin(), values.end(), static_cast<T*>(out.data_ptr()));
  return out;
}

template <class T>
T* Tensor::data() const {
  const DType want = dtype_of<T>();
  const bool half_storage =
      std::is_same_v<T, uint16_t> && (dtype_ == DType::BFloat16 || dtype_ == DType::Float16);
  const bool byte_storage = std::is_same_v<T, uint8_t> &&
                            (dtype_ == DType::Float8E4M3 || dtype_ == DType::Float8E5M2);
  FASTDIT_CHECK(dtype_ == want || half_storage || byte_storage, "tensor of dtype ",
                dtype_name(dtype_), " accessed as ", dtype_name(want));
  return static_cast<T*>(data_ptr());
}

}  // namespace fastdit
