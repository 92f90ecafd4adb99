#include "core/tensor.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <numeric>
#include <sstream>

#include "core/checked_math.h"

namespace fastdit {

std::string shape_str(std::span<const int64_t> shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

int64_t shape_numel(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    const auto next = checked_mul(n, d);
    FASTDIT_CHECK(next.has_value(), "shape ", shape_str(shape), " has more elements than int64 can count");
    n = *next;
  }
  return n;
}

Shape contiguous_strides(std::span<const int64_t> shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

namespace {
std::array<const DeviceHooks*, 2> g_hooks{};
}

const DeviceHooks& cpu_device_hooks();  // cpu_device.cc

void register_device_hooks(DeviceType type, const DeviceHooks* hooks) {
  FASTDIT_CHECK(type != DeviceType::CPU, "the CPU device hooks are built in");
  g_hooks[static_cast<size_t>(type)] = hooks;
}

#ifdef FASTDIT_WITH_CUDA
namespace cuda {
void register_device_hooks();  // backends/cuda/cuda_device.cc
}  // namespace cuda
#endif

const DeviceHooks& device_hooks(DeviceType type) {
  if (type == DeviceType::CPU) return cpu_device_hooks();
#ifdef FASTDIT_WITH_CUDA
  // The CUDA backend installs its hooks here, explicitly, on the first non-CPU request.
  static std::once_flag cuda_installed;
  std::call_once(cuda_installed, [] { cuda::register_device_hooks(); });
#endif
  const DeviceHooks* hooks = g_hooks[static_cast<size_t>(type)];
  FASTDIT_CHECK(hooks != nullptr, "device type ",
                type == DeviceType::CUDA ? "cuda" : "cpu",
                " is not available in this build (fastdit was built without CUDA)");
  return *hooks;
}

void synchronize(Device device) {
  const DeviceHooks& hooks = device_hooks(device.type);
  if (hooks.synchronize) hooks.synchronize(device.index);
}

MemoryStats memory_stats(Device device) {
  MemoryStats stats;
  const DeviceHooks& hooks = device_hooks(device.type);
  if (hooks.memory_stats) hooks.memory_stats(device.index, &stats.in_use, &stats.peak);
  return stats;
}

void reset_peak_memory(Device device) {
  const DeviceHooks& hooks = device_hooks(device.type);
  if (hooks.reset_peak_memory) hooks.reset_peak_memory(device.index);
}

std::string describe_device(Device device) {
  const DeviceHooks& hooks = device_hooks(device.type);
  return hooks.describe ? hooks.describe(device.index) : device.str();
}

void device_wait_stream(Device device, void* stream) {
  const DeviceHooks& hooks = device_hooks(device.type);
  if (hooks.device_wait_stream) hooks.device_wait_stream(device.index, stream);
}

void stream_wait_device(Device device, void* stream) {
  const DeviceHooks& hooks = device_hooks(device.type);
  if (hooks.stream_wait_device) hooks.stream_wait_device(device.index, stream);
}

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  for (int64_t d : shape) FASTDIT_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  const DeviceHooks& hooks = device_hooks(device.type);
  Tensor t;
  const auto nbytes = checked_mul(shape_numel(shape), static_cast<int64_t>(dtype_size(dtype)));
  FASTDIT_CHECK(nbytes.has_value(), "tensor ", dtype_name(dtype), shape_str(shape), " has more bytes than int64 can count");
  t.storage_bytes_ = static_cast<size_t>(*nbytes);
  const size_t bytes = t.storage_bytes_;
  const int index = device.index;
  void* ptr = nullptr;
  try {
    ptr = hooks.allocate(bytes, index);
  } catch (const std::bad_alloc&) {
    FASTDIT_FAIL("out of memory allocating ", dtype_name(dtype), shape_str(shape), " (", bytes, " bytes) on ",
                 device.str());
  } catch (const Error& e) {
    FASTDIT_FAIL("allocating ", dtype_name(dtype), shape_str(shape), " on ", device.str(), ": ", e.what());
  }
  const DeviceHooks* h = &hooks;
  t.storage_ = std::shared_ptr<void>(ptr, [h, bytes, index](void* p) { h->deallocate(p, bytes, index); });
  t.strides_ = contiguous_strides(shape);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
  Tensor t = empty(std::move(shape), dtype, device);
  device_hooks(device.type).fill_zero(t.data_ptr(), t.nbytes(), device.index);
  return t;
}

Tensor Tensor::from_blob(void* data, Shape shape, DType dtype, Device device,
                         std::shared_ptr<void> owner) {
  Shape strides = contiguous_strides(shape);
  return from_blob(data, std::move(shape), std::move(strides), dtype, device, std::move(owner));
}

Tensor Tensor::from_blob(void* data, Shape shape, Shape strides, DType dtype, Device device,
                         std::shared_ptr<void> owner) {
  FASTDIT_CHECK(strides.size() == shape.size(), "from_blob: ", strides.size(), " strides for shape ",
                shape_str(shape));
  int64_t extent = shape_numel(shape) > 0 ? 1 : 0;  // elements from the first to one past the last
  for (size_t i = 0; i < shape.size(); ++i) {
    FASTDIT_CHECK(shape[i] >= 0 && strides[i] >= 0, "from_blob: shape ", shape_str(shape), " strides ",
                  shape_str(strides), ": sizes and strides must be non-negative");
    if (extent > 0) extent += (shape[i] - 1) * strides[i];
  }
  Tensor t;
  t.storage_ = std::shared_ptr<void>(std::move(owner), data);
  t.storage_bytes_ = static_cast<size_t>(extent) * dtype_size(dtype);
  t.strides_ = std::move(strides);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

int64_t Tensor::normalize_dim(int64_t dim, int64_t rank) const {
  const int64_t d = dim < 0 ? dim + rank : dim;
  FASTDIT_CHECK(d >= 0 && d < rank, "dimension ", dim, " out of range for a tensor of rank ",
                rank, " ", shape_str(shape_));
  return d;
}

int64_t Tensor::size(int64_t dim) const { return shape_[normalize_dim(dim, this->dim())]; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " " + device_.str();
}

void* Tensor::data_ptr() const {
  FASTDIT_CHECK(defined(), "access to an undefined tensor");
  return static_cast<char*>(storage_.get()) + offset_ * static_cast<int64_t>(element_size());
}

Tensor Tensor::reshape(Shape shape) const {
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      FASTDIT_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      FASTDIT_CHECK(shape[i] >= 0, "reshape: negative size in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    FASTDIT_CHECK(known > 0 && numel() % known == 0, "reshape: cannot infer -1 in ",
                  shape_str(shape), " for ", numel(), " elements");
    shape[infer] = numel() / known;
  }
  FASTDIT_CHECK(shape_numel(shape) == numel(), "reshape: ", str(), " cannot become ",
                shape_str(shape));
  if (!is_contiguous()) return contiguous().reshape(std::move(shape));
  Tensor t = *this;
  t.strides_ = contiguous_strides(shape);
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  const int64_t d = normalize_dim(dim, this->dim());
  FASTDIT_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d], "narrow: [", start,
                ", ", start + length, ") out of range for dim ", d, " of ", str());
  Tensor t = *this;
  t.offset_ += start * strides_[d];
  t.shape_[d] = length;
  return t;
}

Tensor Tensor::permute(std::span<const int64_t> dims) const {
  FASTDIT_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: ", dims.size(),
                " dims given for ", str());
  std::vector<bool> seen(dims.size(), false);
  Tensor t = *this;
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = normalize_dim(dims[i], dim());
    FASTDIT_CHECK(!seen[d], "permute: dim ", d, " repeated");
    seen[d] = true;
    t.shape_[i] = shape_[d];
    t.strides_[i] = strides_[d];
  }
  return t;
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  Shape order(shape_.size());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[normalize_dim(dim0, dim())], order[normalize_dim(dim1, dim())]);
  return permute(order);
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  const int64_t d = normalize_dim(dim, this->dim() + 1);
  Tensor t = *this;
  const int64_t stride = d < this->dim() ? strides_[d] * shape_[d] : 1;
  t.shape_.insert(t.shape_.begin() + d, 1);
  t.strides_.insert(t.strides_.begin() + d, stride);
  return t;
}

Tensor Tensor::squeeze(int64_t dim) const {
  const int64_t d = normalize_dim(dim, this->dim());
  FASTDIT_CHECK(shape_[d] == 1, "squeeze: dim ", d, " of ", str(), " is not 1");
  Tensor t = *this;
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device_);
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType dtype) const { return to(device_, dtype); }
Tensor Tensor::to(Device device) const { return to(device, dtype_); }

Tensor Tensor::to(Device device, DType dtype) const {
  if (device == device_ && dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype, device);
  out.copy_(*this);
  return out;
}

void Tensor::copy_(const Tensor& src) {
  FASTDIT_CHECK(src.shape_ == shape_, "copy_: shape ", shape_str(src.shape_), " into ",
                shape_str(shape_));
  if (numel() == 0) return;
  FASTDIT_CHECK(is_contiguous(), "copy_ into a non-contiguous tensor is not supported: ", str());
  if (src.device_ == device_) {
    if (src.dtype_ == dtype_ && src.is_contiguous()) {
      device_hooks(device_.type).copy_bytes(data_ptr(), device_, src.data_ptr(), src.device_, nbytes());
    } else {
      device_hooks(device_.type).copy_convert(*this, src);
    }
    return;
  }
  // Across devices: make src contiguous where it lives, move the bytes, convert here.
  const Tensor packed = src.contiguous();
  Tensor moved = dtype_ == src.dtype_ ? *this : empty(shape_, src.dtype_, device_);
  const DeviceType mover = device_.is_cuda() ? device_.type : src.device_.type;
  device_hooks(mover).copy_bytes(moved.data_ptr(), device_, packed.data_ptr(), packed.device_,
                                 packed.nbytes());
  if (moved.dtype_ != dtype_) device_hooks(device_.type).copy_convert(*this, moved);
}

float Tensor::item() const {
  FASTDIT_CHECK(numel() == 1, "item() on ", str());
  return to_float_vector()[0];
}

std::vector<float> Tensor::to_float_vector() const {
  const Tensor f = to(Device::cpu(), DType::Float32).contiguous();
  const float* p = f.data<float>();
  return std::vector<float>(p, p + f.numel());
}

}  // namespace fastdit
