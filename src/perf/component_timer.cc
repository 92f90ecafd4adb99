#include "perf/component_timer.h"

#include <chrono>
#include <string_view>

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
    const std::string_view name = op;
    KernelTime& kernel = times_.by_op[op];
    kernel.seconds += elapsed;
    ++kernel.calls;
    if (name == "attention" || name == "cross_attention") times_.attention_s += elapsed;
    if (name == "linear" || name == "linear_gelu" || name == "linear_fp8") times_.gemm_s += elapsed;
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
