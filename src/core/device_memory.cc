#include "core/device_memory.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace fastdit {

namespace {

// A "<key>: <n> kB" line of a /proc file, in bytes; 0 when absent.
size_t proc_kib(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string name;
  size_t kib = 0;
  while (in >> name) {
    if (name == key + ":" && in >> kib) return kib * 1024;
    in.ignore(4096, '\n');
  }
  return 0;
}

// What is left under a resource limit given what the process uses of it now.
size_t left_under(int resource, size_t used) {
  struct rlimit limit {};
  if (::getrlimit(resource, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
  return limit.rlim_cur > used ? limit.rlim_cur - used : 0;
}

DeviceMemory cpu_memory(int) {
  DeviceMemory m{proc_kib("/proc/meminfo", "MemAvailable"), proc_kib("/proc/meminfo", "MemTotal")};
  if (m.total == 0) m.available = m.total = SIZE_MAX;  // no /proc: nothing to tell but the limits
  m.available = std::min({m.available, left_under(RLIMIT_AS, proc_kib("/proc/self/status", "VmSize")),
                          left_under(RLIMIT_DATA, proc_kib("/proc/self/status", "VmData"))});
  return m;
}

MemoryInfoFn& memory_info(DeviceType type) {
  static MemoryInfoFn cpu = cpu_memory, cuda = nullptr;
  return type == DeviceType::CPU ? cpu : cuda;
}

}  // namespace

std::optional<DeviceMemory> device_memory(Device device) {
  const MemoryInfoFn fn = memory_info(device.type);
  if (!fn) return std::nullopt;
  return fn(device.index);
}

void register_memory_info(DeviceType type, MemoryInfoFn fn) { memory_info(type) = fn; }

std::string gib_str(double bytes) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(bytes < (1 << 30) ? 3 : 1);
  out << bytes / (1 << 30) << " GiB";
  return out.str();
}

void require_memory(Device device, size_t bytes, const std::string& what) {
  const auto memory = device_memory(device);
  if (!memory || bytes <= memory->available) return;
  FASTDIT_FAIL(what, " needs ~", gib_str(static_cast<double>(bytes)), ", ", device.str(), " has ",
               gib_str(static_cast<double>(memory->total)), " (free ", gib_str(static_cast<double>(memory->available)),
               ")");
}

}  // namespace fastdit
