// Splits the time of some work (a benchmark iteration) into attention, GEMM and the
// rest, by timing each kernel the op layer launches with the device synchronized on
// both sides of it: an asynchronous device's queue would otherwise charge one kernel's
// time to whichever launch happens to wait. The synchronization slows the work down, so
// a benchmark times its latency without it and runs this as a separate pass.
// A device with event timers (CUDA events) can give a finer split through the same
// ops::KernelObserver seam without the synchronization.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "core/device.h"

namespace fastdit::perf {

struct KernelTime {
  double seconds = 0;
  int64_t calls = 0;
};

struct ComponentTimes {
  double attention_s = 0;  // ops::attention ("attention", "cross_attention") and ops::attention_8bit
  double gemm_s = 0;       // ops::linear, ops::linear_gelu, ops::linear_fp8 and its activation quantize
  double other_s = 0;      // the rest of the wall time: other kernels, copies, host work
  std::map<std::string, KernelTime> by_op;  // every op-layer kernel, by op name
};

enum class Component { Attention, Gemm, Other };

// Which part of the split an op-layer kernel's time goes to: the FP8 linear's per-token
// quantize ("quantize_fp8_rows", its own op so the per-op split shows it) is GEMM time, as it
// is part of every FP8 linear; the 8-bit self-attention is attention.
Component component_of(std::string_view op);

// Runs `work` once on `device` with the kernel observer attached.
ComponentTimes time_components(Device device, const std::function<void()>& work);

}  // namespace fastdit::perf
