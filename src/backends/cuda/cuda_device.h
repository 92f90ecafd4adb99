// The CUDA device as the rest of the backend sees it: one stream per device that every
// kernel and copy runs on, a caching allocator behind Tensor::empty, and the DeviceHooks
// core calls (installed by core on its first CUDA request through register_device_hooks;
// nothing here touches the GPU until a CUDA tensor is made).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace fastdit::cuda {

// The non-default stream of `device`, created on first use. All work of the backend is
// ordered on it, which is what lets freed memory be reused without events.
cudaStream_t current_stream(int device);

// Waits for everything queued on the device's stream.
void synchronize(int device);

// Whether the device's stream is being captured into a CUDA graph (cuda_graph.cc). The
// copy hooks and synchronize refuse host copies and waits then, naming them.
bool is_capturing(int device);

// The memory of a capture. From begin_capture_pool to end_capture_pool every allocation
// on `device` comes from a new pool: its own free blocks, then shared free blocks (its
// for good), then cudaMalloc. Its blocks stay its own while the graph lives, free or
// not, since every replay writes them; a shared block freed during the capture is held
// untouched, since the recorded work may read it. Once released, and as soon as no
// tensor holds one of them, its blocks join the shared free lists.
uint64_t begin_capture_pool(int device);
void end_capture_pool(int device);
void release_capture_pool(uint64_t pool, int device);

int device_count();
const cudaDeviceProp& device_properties(int device);

struct MemoryStats {
  size_t allocated_bytes = 0;       // in tensors now (sizes as rounded by the allocator)
  size_t peak_allocated_bytes = 0;  // the most allocated_bytes has been
  size_t reserved_bytes = 0;        // taken from cudaMalloc: allocated plus cached free blocks
};
MemoryStats cuda_memory_stats(int device = 0);
// Returns every cached free block of every device to the driver.
void empty_cache();

// Installs the CUDA DeviceHooks in core (core/tensor.cc calls it once).
void register_device_hooks();

// While on, every new allocation is filled with all-ones bits (NaN in every float dtype)
// on the device's stream, so a kernel that leaves an output element unwritten shows. For
// tests (the op harness); off by default.
void set_allocation_poison(bool on);

// Makes `device` the current CUDA device for the scope, restoring the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  explicit DeviceGuard(Device device) : DeviceGuard(device.index) {}
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  int device_;
};

}  // namespace fastdit::cuda
