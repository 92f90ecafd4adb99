// The CPU device: aligned host memory and the strided copy/convert loop every other
// part of core relies on.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "core/half.h"
#include "core/tensor.h"

namespace fastdit {
namespace {

constexpr size_t kAlignment = 64;

std::atomic<size_t> g_in_use{0};
std::atomic<size_t> g_peak{0};

void* cpu_allocate(size_t nbytes, int) {
  const size_t rounded = (std::max<size_t>(nbytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  void* ptr = std::aligned_alloc(kAlignment, rounded);
  FASTDIT_CHECK(ptr != nullptr, "out of host memory allocating ", nbytes, " bytes");
  const size_t now = g_in_use += nbytes;
  for (size_t peak = g_peak.load(); now > peak && !g_peak.compare_exchange_weak(peak, now);) {
  }
  return ptr;
}

void cpu_deallocate(void* ptr, size_t nbytes, int) {
  std::free(ptr);
  g_in_use -= nbytes;
}

void cpu_synchronize(int) {}

void cpu_memory_stats(int, size_t* in_use, size_t* peak) {
  *in_use = g_in_use.load();
  *peak = g_peak.load();
}

void cpu_reset_peak_memory(int) { g_peak = g_in_use.load(); }

std::string cpu_describe(int) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("model name")) return line.substr(line.find(':') + 2);
  return "cpu";
}

void cpu_copy_bytes(void* dst, Device, const void* src, Device, size_t nbytes) {
  std::memcpy(dst, src, nbytes);
}

void cpu_fill_zero(void* ptr, size_t nbytes, int) { std::memset(ptr, 0, nbytes); }

// Floats travel through double (exact for every float type we hold); integers
// through int64 / uint64 so 64-bit values survive.
double load_as_double(const char* p, DType dtype) {
  switch (dtype) {
    case DType::Float32: return *reinterpret_cast<const float*>(p);
    case DType::Float64: return *reinterpret_cast<const double*>(p);
    case DType::BFloat16: return bf16_bits_to_float(*reinterpret_cast<const uint16_t*>(p));
    case DType::Float16: return f16_bits_to_float(*reinterpret_cast<const uint16_t*>(p));
    case DType::Float8E4M3: return f8e4m3_bits_to_float(*reinterpret_cast<const uint8_t*>(p));
    case DType::Float8E5M2: return f8e5m2_bits_to_float(*reinterpret_cast<const uint8_t*>(p));
    case DType::Int8: return *reinterpret_cast<const int8_t*>(p);
    case DType::Int16: return *reinterpret_cast<const int16_t*>(p);
    case DType::Int32: return *reinterpret_cast<const int32_t*>(p);
    case DType::Int64: return static_cast<double>(*reinterpret_cast<const int64_t*>(p));
    case DType::UInt8: return *reinterpret_cast<const uint8_t*>(p);
    case DType::UInt16: return *reinterpret_cast<const uint16_t*>(p);
    case DType::UInt32: return *reinterpret_cast<const uint32_t*>(p);
    case DType::UInt64: return static_cast<double>(*reinterpret_cast<const uint64_t*>(p));
    case DType::Bool: return *reinterpret_cast<const uint8_t*>(p) ? 1.0 : 0.0;
  }
  return 0.0;
}

template <class T>
void store_int(char* p, double v) {
  *reinterpret_cast<T*>(p) = static_cast<T>(v);
}

void store_from_double(char* p, DType dtype, double v) {
  switch (dtype) {
    case DType::Float32: *reinterpret_cast<float*>(p) = static_cast<float>(v); return;
    case DType::Float64: *reinterpret_cast<double*>(p) = v; return;
    case DType::BFloat16:
      *reinterpret_cast<uint16_t*>(p) = float_to_bf16_bits(static_cast<float>(v));
      return;
    case DType::Float16:
      *reinterpret_cast<uint16_t*>(p) = float_to_f16_bits(static_cast<float>(v));
      return;
    case DType::Float8E4M3:
    case DType::Float8E5M2:
      FASTDIT_FAIL("conversion to ", dtype_name(dtype), " is not supported");
    case DType::Int8: store_int<int8_t>(p, v); return;
    case DType::Int16: store_int<int16_t>(p, v); return;
    case DType::Int32: store_int<int32_t>(p, v); return;
    case DType::Int64: store_int<int64_t>(p, v); return;
    case DType::UInt8: store_int<uint8_t>(p, v); return;
    case DType::UInt16: store_int<uint16_t>(p, v); return;
    case DType::UInt32: store_int<uint32_t>(p, v); return;
    case DType::UInt64: store_int<uint64_t>(p, v); return;
    case DType::Bool: *reinterpret_cast<uint8_t*>(p) = v != 0.0; return;
  }
}

bool is_64bit_int(DType d) { return d == DType::Int64 || d == DType::UInt64; }

// The hot cases: contiguous float32 <-> bfloat16 / float16.
bool convert_fast(Tensor& dst, const Tensor& src) {
  if (!src.is_contiguous()) return false;
  const int64_t n = src.numel();
  const DType from = src.dtype(), to = dst.dtype();
  if (from == DType::Float32 && (to == DType::BFloat16 || to == DType::Float16)) {
    const float* s = static_cast<const float*>(src.data_ptr());
    auto* d = static_cast<uint16_t*>(dst.data_ptr());
    if (to == DType::BFloat16) {
#pragma omp parallel for if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16_bits(s[i]);
    } else {
#pragma omp parallel for if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_f16_bits(s[i]);
    }
    return true;
  }
  if (to == DType::Float32 && (from == DType::BFloat16 || from == DType::Float16)) {
    const auto* s = static_cast<const uint16_t*>(src.data_ptr());
    float* d = static_cast<float*>(dst.data_ptr());
    if (from == DType::BFloat16) {
#pragma omp parallel for if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) d[i] = bf16_bits_to_float(s[i]);
    } else {
#pragma omp parallel for if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) d[i] = f16_bits_to_float(s[i]);
    }
    return true;
  }
  return false;
}

void cpu_copy_convert(Tensor& dst, const Tensor& src) {
  if (convert_fast(dst, src)) return;
  const DType from = src.dtype(), to = dst.dtype();
  const size_t in_size = dtype_size(from), out_size = dtype_size(to);
  const bool same = from == to;
  const bool int64_path = is_64bit_int(from) && is_64bit_int(to);
  const int64_t n = src.numel();
  const int64_t rank = src.dim();
  const auto& shape = src.shape();
  const auto& strides = src.strides();
  const char* base = static_cast<const char*>(src.data_ptr());
  char* out = static_cast<char*>(dst.data_ptr());
  std::vector<int64_t> index(rank, 0);
  int64_t offset = 0;  // element offset of `index` in src
  for (int64_t i = 0; i < n; ++i) {
    const char* p = base + offset * static_cast<int64_t>(in_size);
    char* q = out + i * static_cast<int64_t>(out_size);
    if (same || int64_path) {
      std::memcpy(q, p, same ? in_size : 8);
    } else {
      store_from_double(q, to, load_as_double(p, from));
    }
    for (int64_t d = rank - 1; d >= 0; --d) {
      if (++index[d] < shape[d]) {
        offset += strides[d];
        break;
      }
      offset -= strides[d] * (shape[d] - 1);
      index[d] = 0;
    }
  }
}

}  // namespace

const DeviceHooks& cpu_device_hooks() {
  static const DeviceHooks hooks{cpu_allocate,     cpu_deallocate,   cpu_copy_bytes,
                                 cpu_fill_zero,    cpu_copy_convert, cpu_synchronize,
                                 cpu_memory_stats, cpu_reset_peak_memory, cpu_describe};
  return hooks;
}

}  // namespace fastdit
