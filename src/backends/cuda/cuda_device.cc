// Streams, the caching allocator and the DeviceHooks of the CUDA device.
//
// The allocator rounds every request up (to 512 B below 1 MiB, to 2 MiB above) and keeps
// freed blocks in free lists keyed by that rounded size, so a denoising loop that makes
// the same tensors every step stops calling cudaMalloc after its first step. Blocks are
// reused without events because all work of a device runs on its one stream, in order.
// A CUDA graph capture is served from a pool of its own (cuda_device.h says how), so
// memory a graph's replays write is never handed to anyone else.
// The process-lifetime state (streams, pools) is deliberately leaked: tensors held by
// static objects may be freed after other statics are gone.
#include "backends/cuda/cuda_device.h"

#include "core/device_memory.h"

#include <atomic>
#include <cstring>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backends/cuda/cuda_check.h"

namespace fastdit::cuda {

void copy_convert(Tensor& dst, const Tensor& src);  // copy_convert.cu
void* capture_graph(int device, const std::function<void()>& body);  // cuda_graph.cc
void replay_graph(void* graph);
void destroy_graph(void* graph);

namespace detail {

void fail_call(const char* file, int line, const char* call, const char* library, int status,
               const std::string& message) {
  fastdit::detail::fail(file, line,
                        fastdit::detail::concat(library, " call ", call, " failed with status ",
                                                status, ": ", message));
}

}  // namespace detail

namespace {

constexpr size_t kSmallBlockLimit = size_t{1} << 20;
constexpr size_t kSmallRounding = 512;
constexpr size_t kLargeRounding = size_t{2} << 20;

size_t rounded_size(size_t nbytes) {
  const size_t n = std::max<size_t>(nbytes, 1);
  const size_t unit = n <= kSmallBlockLimit ? kSmallRounding : kLargeRounding;
  return (n + unit - 1) / unit * unit;
}

using FreeLists = std::unordered_map<size_t, std::vector<void*>>;  // rounded size -> blocks

// The memory of one captured graph (see cuda_device.h).
struct CapturePool {
  FreeLists free_blocks;
  std::vector<std::pair<void*, size_t>> held;  // shared blocks freed during the capture
  size_t live = 0;                             // its blocks in tensors now
  bool released = false;                       // the graph is gone
};

struct LiveBlock {
  size_t size;    // rounded
  uint64_t pool;  // the capture pool it came from; 0: the device's shared blocks
};

struct DevicePool {
  FreeLists free_blocks;
  std::unordered_map<void*, LiveBlock> live_blocks;
  uint64_t capturing = 0;  // the capture pool serving this device's allocations now
  MemoryStats stats;       // over shared and capture blocks alike
};

class CachingAllocator {
 public:
  void* allocate(size_t nbytes, int device) {
    const size_t size = rounded_size(nbytes);
    std::lock_guard lock(mutex_);
    DevicePool& pool = pools_[device];
    void* ptr = nullptr;
    if (pool.capturing != 0) {
      // The graph's own free blocks, then a shared free one (the graph's for good: it
      // writes it on every replay), then new memory.
      CapturePool& capture = capture_pools_.at(pool.capturing);
      ptr = take_free_block(capture.free_blocks, size);
      if (ptr == nullptr) ptr = take_free_block(pool.free_blocks, size);
      if (ptr == nullptr) ptr = malloc_while_capturing(pool, size, device);
      ++capture.live;
    } else {
      ptr = take_free_block(pool.free_blocks, size);
      if (ptr == nullptr) ptr = malloc_block(pool, size, device);
    }
    pool.live_blocks.emplace(ptr, LiveBlock{size, pool.capturing});
    pool.stats.allocated_bytes += size;
    pool.stats.peak_allocated_bytes =
        std::max(pool.stats.peak_allocated_bytes, pool.stats.allocated_bytes);
    return ptr;
  }

  void deallocate(void* ptr, int device) {
    std::lock_guard lock(mutex_);
    DevicePool& pool = pools_[device];
    const auto live = pool.live_blocks.find(ptr);
    if (live == pool.live_blocks.end()) return;  // not ours: nothing sane to do in a deleter
    const LiveBlock block = live->second;
    pool.live_blocks.erase(live);
    pool.stats.allocated_bytes -= block.size;
    if (block.pool != 0) {
      CapturePool& capture = capture_pools_.at(block.pool);
      capture.free_blocks[block.size].push_back(ptr);
      --capture.live;
      if (capture.released && capture.live == 0) return_capture_pool(pool, block.pool);
    } else if (pool.capturing != 0) {
      // The recorded work may read this block on every replay: no one, the graph
      // included, may write it while the graph lives.
      capture_pools_.at(pool.capturing).held.emplace_back(ptr, block.size);
    } else {
      pool.free_blocks[block.size].push_back(ptr);
    }
  }

  uint64_t begin_capture(int device) {
    std::lock_guard lock(mutex_);
    DevicePool& pool = pools_[device];
    FASTDIT_CHECK(pool.capturing == 0, "cuda:", device, " is already serving a CUDA graph capture");
    pool.capturing = next_capture_pool_++;
    capture_pools_.emplace(pool.capturing, CapturePool{});
    return pool.capturing;
  }

  void end_capture(int device) {
    std::lock_guard lock(mutex_);
    pools_[device].capturing = 0;
  }

  void release_capture(uint64_t id, int device) {
    std::lock_guard lock(mutex_);
    const auto capture = capture_pools_.find(id);
    if (capture == capture_pools_.end()) return;
    capture->second.released = true;
    if (capture->second.live == 0) return_capture_pool(pools_[device], id);
  }

  MemoryStats stats(int device) {
    std::lock_guard lock(mutex_);
    return pools_[device].stats;
  }

  void reset_peak(int device) {
    std::lock_guard lock(mutex_);
    MemoryStats& stats = pools_[device].stats;
    stats.peak_allocated_bytes = stats.allocated_bytes;
  }

  void empty_cache() {
    std::lock_guard lock(mutex_);
    for (auto& [device, pool] : pools_) {
      FASTDIT_CHECK(pool.capturing == 0, "empty_cache during a CUDA graph capture on cuda:", device,
                    " (cudaFree cannot be captured)");
      release_free_blocks(pool, device);
    }
  }

 private:
  static void* take_free_block(FreeLists& free_blocks, size_t size) {
    const auto bucket = free_blocks.find(size);
    if (bucket == free_blocks.end() || bucket->second.empty()) return nullptr;
    void* ptr = bucket->second.back();
    bucket->second.pop_back();
    return ptr;
  }

  // On out-of-memory, the cached blocks of every size go back to the driver and the
  // request is tried once more.
  static void* malloc_block(DevicePool& pool, size_t size, int device) {
    DeviceGuard guard(device);
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_free_blocks(pool, device);
      status = cudaMalloc(&ptr, size);
    }
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      cudaGetLastError();
      FASTDIT_FAIL("out of CUDA memory on cuda:", device, " allocating ", size, " bytes (",
                   pool.stats.allocated_bytes, " bytes in tensors, ", pool.stats.reserved_bytes,
                   " reserved; the device has ", gib_str(static_cast<double>(total)), ", free ",
                   gib_str(static_cast<double>(free)), ")");
    }
    FASTDIT_CUDA_CHECK(status);
    pool.stats.reserved_bytes += size;
    return ptr;
  }

  // cudaMalloc queues no work, so the capture lets it through in relaxed mode; there is
  // no retry after returning cached blocks, since cudaFree may not run while capturing.
  static void* malloc_while_capturing(DevicePool& pool, size_t size, int device) {
    DeviceGuard guard(device);
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    FASTDIT_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    void* ptr = nullptr;
    const cudaError_t status = cudaMalloc(&ptr, size);
    FASTDIT_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      FASTDIT_FAIL("out of CUDA memory on cuda:", device, " allocating ", size,
                   " bytes during a CUDA graph capture (", pool.stats.allocated_bytes,
                   " bytes in tensors, ", pool.stats.reserved_bytes,
                   " reserved; cached blocks cannot be freed while capturing)");
    }
    FASTDIT_CUDA_CHECK(status);
    pool.stats.reserved_bytes += size;
    return ptr;
  }

  // A released pool's blocks join the shared free lists. Work queued later on the
  // device's one stream runs after any replay already queued, so no wait is needed.
  void return_capture_pool(DevicePool& pool, uint64_t id) {
    CapturePool& capture = capture_pools_.at(id);
    for (auto& [size, blocks] : capture.free_blocks) {
      auto& shared = pool.free_blocks[size];
      shared.insert(shared.end(), blocks.begin(), blocks.end());
    }
    for (const auto& [ptr, size] : capture.held) pool.free_blocks[size].push_back(ptr);
    capture_pools_.erase(id);
  }

  static void release_free_blocks(DevicePool& pool, int device) {
    DeviceGuard guard(device);
    for (auto& [size, blocks] : pool.free_blocks) {
      for (void* ptr : blocks) FASTDIT_CUDA_CHECK(cudaFree(ptr));
      pool.stats.reserved_bytes -= size * blocks.size();
      blocks.clear();
    }
  }

  std::mutex mutex_;
  std::map<int, DevicePool> pools_;
  std::unordered_map<uint64_t, CapturePool> capture_pools_;
  uint64_t next_capture_pool_ = 1;
};

CachingAllocator& allocator() {
  static auto* instance = new CachingAllocator();
  return *instance;
}

// ---- device hooks ----------------------------------------------------------------------

std::atomic<bool> g_poison_allocations{false};

void* hook_allocate(size_t nbytes, int device) {
  void* ptr = allocator().allocate(nbytes, device);
  if (g_poison_allocations.load(std::memory_order_relaxed) && ptr != nullptr && nbytes > 0) {
    // All-ones bits: NaN in float32, bfloat16 and float16.
    FASTDIT_CUDA_CHECK(cudaMemsetAsync(ptr, 0xff, nbytes, current_stream(device)));
  }
  return ptr;
}

void hook_deallocate(void* ptr, size_t, int device) { allocator().deallocate(ptr, device); }

// Large host-to-device copies (checkpoint loads) go through two pinned buffers per
// device: host threads fill one (parallel page faults and memcpy) while the DMA engine
// drains the other, instead of the driver's single-threaded pageable staging.
class PinnedStaging {
 public:
  static constexpr size_t kChunk = size_t{32} << 20;
  static constexpr size_t kMinBytes = size_t{4} << 20;

  void copy_to_device(void* dst, const void* src, size_t nbytes, int device) {
    std::lock_guard lock(mutex_);
    Buffers& b = buffers_for(device);
    const cudaStream_t stream = current_stream(device);
    for (size_t offset = 0, i = 0; offset < nbytes; offset += kChunk, ++i) {
      const size_t n = std::min(kChunk, nbytes - offset);
      const int slot = static_cast<int>(i % 2);
      FASTDIT_CUDA_CHECK(cudaEventSynchronize(b.drained[slot]));
      parallel_memcpy(b.host[slot], static_cast<const char*>(src) + offset, n);
      FASTDIT_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + offset, b.host[slot], n,
                                         cudaMemcpyHostToDevice, stream));
      FASTDIT_CUDA_CHECK(cudaEventRecord(b.drained[slot], stream));
    }
  }

 private:
  struct Buffers {
    char* host[2] = {nullptr, nullptr};
    cudaEvent_t drained[2] = {nullptr, nullptr};
  };

  Buffers& buffers_for(int device) {
    Buffers& b = buffers_[device];
    if (!b.host[0]) {
      for (int slot = 0; slot < 2; ++slot) {
        FASTDIT_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&b.host[slot]), kChunk, cudaHostAllocDefault));
        FASTDIT_CUDA_CHECK(cudaEventCreateWithFlags(&b.drained[slot], cudaEventDisableTiming));
        FASTDIT_CUDA_CHECK(cudaEventRecord(b.drained[slot], current_stream(device)));
      }
    }
    return b;
  }

  static void parallel_memcpy(char* dst, const char* src, size_t n) {
    constexpr size_t kPiece = size_t{1} << 20;
    const int64_t pieces = static_cast<int64_t>((n + kPiece - 1) / kPiece);
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < pieces; ++p) {
      const size_t begin = static_cast<size_t>(p) * kPiece;
      std::memcpy(dst + begin, src + begin, std::min(kPiece, n - begin));
    }
  }

  std::mutex mutex_;
  std::unordered_map<int, Buffers> buffers_;
};

PinnedStaging& pinned_staging() {
  static auto* staging = new PinnedStaging();  // lives past static destruction, like the CUDA context
  return *staging;
}

// Host-to-device copies from pageable memory return once the source is staged, so the
// caller may free it at once; device-to-host copies wait for the data.
void hook_copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                     size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cuda() && src_device.is_cuda() && dst_device.index != src_device.index) {
    FASTDIT_CHECK(!is_capturing(src_device.index) && !is_capturing(dst_device.index),
                  "a copy between cuda:", src_device.index, " and cuda:", dst_device.index,
                  " during a CUDA graph capture: it waits for the source device");
    synchronize(src_device.index);
    DeviceGuard guard(dst_device);
    FASTDIT_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes,
                                           current_stream(dst_device.index)));
    synchronize(dst_device.index);  // src's stream may reuse the source block right after
    return;
  }
  const Device device = dst_device.is_cuda() ? dst_device : src_device;
  DeviceGuard guard(device);
  const cudaMemcpyKind kind = !src_device.is_cuda()   ? cudaMemcpyHostToDevice
                              : !dst_device.is_cuda() ? cudaMemcpyDeviceToHost
                                                      : cudaMemcpyDeviceToDevice;
  // A replay would re-read the host buffer as it is then (or write one long gone).
  FASTDIT_CHECK(kind == cudaMemcpyDeviceToDevice || !is_capturing(device.index), "a ",
                kind == cudaMemcpyHostToDevice ? "host-to-device" : "device-to-host", " copy of ",
                nbytes, " bytes during a CUDA graph capture on ", device.str(),
                ": a graph holds device work only; upload before the capture, read results after a replay");
  if (kind == cudaMemcpyHostToDevice && nbytes >= PinnedStaging::kMinBytes) {
    pinned_staging().copy_to_device(dst, src, nbytes, device.index);
    return;
  }
  FASTDIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, current_stream(device.index)));
  if (kind == cudaMemcpyDeviceToHost) synchronize(device.index);
}

void hook_fill_zero(void* ptr, size_t nbytes, int device) {
  DeviceGuard guard(device);
  FASTDIT_CUDA_CHECK(cudaMemsetAsync(ptr, 0, nbytes, current_stream(device)));
}

void hook_synchronize(int device);
void hook_memory_stats(int device, size_t* in_use, size_t* peak);
void hook_reset_peak_memory(int device);
std::string hook_describe(int device);
DeviceMemory hook_memory_info(int device);

// One event orders `waiter` after what `signaller` holds now. Destroying it right away is
// allowed: CUDA releases it once the wait is done.
void order_streams(int device, cudaStream_t signaller, cudaStream_t waiter) {
  DeviceGuard guard(device);
  cudaEvent_t event = nullptr;
  FASTDIT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  FASTDIT_CUDA_CHECK(cudaEventRecord(event, signaller));
  FASTDIT_CUDA_CHECK(cudaStreamWaitEvent(waiter, event, 0));
  FASTDIT_CUDA_CHECK(cudaEventDestroy(event));
}

void hook_device_wait_stream(int device, void* stream) {
  order_streams(device, static_cast<cudaStream_t>(stream), current_stream(device));
}

void hook_stream_wait_device(int device, void* stream) {
  order_streams(device, current_stream(device), static_cast<cudaStream_t>(stream));
}

const DeviceHooks kCudaHooks{hook_allocate,     hook_deallocate,        hook_copy_bytes,
                             hook_fill_zero,    copy_convert,           hook_synchronize,
                             hook_memory_stats, hook_reset_peak_memory, hook_describe,
                             capture_graph,     replay_graph,           destroy_graph,
                             hook_device_wait_stream, hook_stream_wait_device};


// ---- streams and properties ------------------------------------------------------------

// The runtime's devices, probed once; none, with the runtime's reason, where there is no
// GPU or the driver is older than the runtime.
struct ProbedDevices {
  int count = 0;
  std::string reason;
};
const ProbedDevices& probed_devices() {
  static const ProbedDevices probed = [] {
    ProbedDevices p;
    const cudaError_t status = cudaGetDeviceCount(&p.count);
    if (status != cudaSuccess) {
      cudaGetLastError();
      p.count = 0;
      p.reason = cudaGetErrorString(status);
    } else if (p.count == 0) {
      p.reason = "the runtime found no GPU";
    }
    return p;
  }();
  return probed;
}

void check_device_exists(int device) {
  const ProbedDevices& probed = probed_devices();
  FASTDIT_CHECK(probed.count > 0, "no CUDA device is available (", probed.reason, ")");
  FASTDIT_CHECK(device >= 0 && device < probed.count, "cuda:", device, " does not exist (", probed.count,
                " CUDA devices)");
}
struct DeviceState {
  std::once_flag created;
  cudaStream_t stream = nullptr;
  cudaDeviceProp properties{};
};

DeviceState& device_state(int device) {
  check_device_exists(device);
  static auto* states = new std::vector<DeviceState>(static_cast<size_t>(device_count()));
  DeviceState& state = (*states)[device];
  std::call_once(state.created, [&] {
    DeviceGuard guard(device);
    FASTDIT_CUDA_CHECK(cudaStreamCreateWithFlags(&state.stream, cudaStreamNonBlocking));
    FASTDIT_CUDA_CHECK(cudaGetDeviceProperties(&state.properties, device));
  });
  return state;
}

}  // namespace

cudaStream_t current_stream(int device) { return device_state(device).stream; }

void synchronize(int device) {
  DeviceGuard guard(device);
  FASTDIT_CHECK(!is_capturing(device), "synchronize(cuda:", device,
                ") during a CUDA graph capture: the captured code waits for the device (to read a "
                "result on the host?), which a graph cannot replay");
  FASTDIT_CUDA_CHECK(cudaStreamSynchronize(current_stream(device)));
}

bool is_capturing(int device) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  FASTDIT_CUDA_CHECK(cudaStreamIsCapturing(current_stream(device), &status));
  return status != cudaStreamCaptureStatusNone;
}

uint64_t begin_capture_pool(int device) { return allocator().begin_capture(device); }
void end_capture_pool(int device) { allocator().end_capture(device); }
void release_capture_pool(uint64_t pool, int device) { allocator().release_capture(pool, device); }

int device_count() { return probed_devices().count; }

const cudaDeviceProp& device_properties(int device) { return device_state(device).properties; }

MemoryStats cuda_memory_stats(int device) { return allocator().stats(device); }

namespace {
void hook_synchronize(int device) { synchronize(device); }

void hook_memory_stats(int device, size_t* in_use, size_t* peak) {
  const MemoryStats stats = allocator().stats(device);
  *in_use = stats.allocated_bytes;
  *peak = stats.peak_allocated_bytes;
}

void hook_reset_peak_memory(int device) { allocator().reset_peak(device); }

std::string hook_describe(int device) { return device_properties(device).name; }

// The driver's free memory plus the blocks the caching allocator holds unused.
DeviceMemory hook_memory_info(int device) {
  DeviceGuard guard(device);
  DeviceMemory memory;
  FASTDIT_CUDA_CHECK(cudaMemGetInfo(&memory.available, &memory.total));
  const MemoryStats stats = allocator().stats(device);
  memory.available += stats.reserved_bytes - stats.allocated_bytes;
  return memory;
}
}  // namespace

void empty_cache() { allocator().empty_cache(); }

void register_device_hooks() {
  fastdit::register_device_hooks(DeviceType::CUDA, &kCudaHooks);
  register_memory_info(DeviceType::CUDA, hook_memory_info);
}

void set_allocation_poison(bool on) { g_poison_allocations.store(on, std::memory_order_relaxed); }

DeviceGuard::DeviceGuard(int device) : device_(device) {
  check_device_exists(device);
  FASTDIT_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device_) FASTDIT_CUDA_CHECK(cudaSetDevice(device_));
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0 && previous_ != device_) cudaSetDevice(previous_);
}

}  // namespace fastdit::cuda
