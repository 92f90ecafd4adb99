// How much memory a device can still give this process, and the check every allocation-heavy
// step makes with it before allocating (DESIGN.md, errors).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "core/device.h"

namespace fastdit {

struct DeviceMemory {
  size_t available = 0;  // what this process could still allocate there
  size_t total = 0;
};
// CPU: MemAvailable, bounded by what RLIMIT_AS / RLIMIT_DATA leave; CUDA: cudaMemGetInfo plus
// the caching allocator's free blocks. None where the backend cannot tell.
std::optional<DeviceMemory> device_memory(Device device);
using MemoryInfoFn = DeviceMemory (*)(int index);
void register_memory_info(DeviceType type, MemoryInfoFn fn);

// Fails with `<what> needs ~X GiB, <device> has Y GiB (free Z GiB)` when `bytes` exceeds what
// the device can still give; a no-op where it cannot tell.
void require_memory(Device device, size_t bytes, const std::string& what);
std::string gib_str(double bytes);  // "12.3 GiB"

}  // namespace fastdit
