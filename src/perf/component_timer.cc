#include "perf/component_timer.h"

#include <chrono>

#include "core/tensor.h"
#include "ops/ops.h"

namespace fastdit::perf {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

class SynchronizedKernelTimer : public ops::KernelObserver {
 public:
  void before_kernel(const char*, Device device) override {
    synchronize(device);
    start_ = Clock::now();
  }
  void after_kernel(const char* op, Device device) override {
    synchronize(device);
    const double elapsed = seconds_since(start_);
    KernelTime& kernel = times_.by_op[op];
    kernel.seconds += elapsed;
    ++kernel.calls;
    switch (component_of(op)) {
      case Component::Attention: times_.attention_s += elapsed; break;
      case Component::Gemm: times_.gemm_s += elapsed; break;
      case Component::Other: break;
    }
  }
  const ComponentTimes& times() const { return times_; }

 private:
  Clock::time_point start_;
  ComponentTimes times_;
};

// Detaches the observer however the work ends.
struct ObserverAttachment {
  explicit ObserverAttachment(ops::KernelObserver* observer) { ops::set_kernel_observer(observer); }
  ~ObserverAttachment() { ops::set_kernel_observer(nullptr); }
};

}  // namespace

Component component_of(std::string_view op) {
  if (op == "attention" || op == "cross_attention" || op == "attention_8bit") return Component::Attention;
  if (op == "linear" || op == "linear_gelu" || op == "linear_fp8" || op == "quantize_fp8_rows") return Component::Gemm;
  return Component::Other;
}

ComponentTimes time_components(Device device, const std::function<void()>& work) {
  SynchronizedKernelTimer timer;
  synchronize(device);
  const Clock::time_point start = Clock::now();
  {
    ObserverAttachment attachment(&timer);
    work();
    synchronize(device);
  }
  ComponentTimes times = timer.times();
  times.other_s = seconds_since(start) - times.attention_s - times.gemm_s;
  return times;
}

}  // namespace fastdit::perf
