// A recording of the device work a piece of host code queues, replayed later with one
// launch (a CUDA graph on CUDA devices). The host code runs once, at capture; a replay
// repeats its kernels and copies on the same memory and nothing else: host-side
// decisions, host copies and waits are not part of it. Capturing code that needs one of
// those fails and names it. Memory the recorded work allocates comes from a pool of the
// graph's own, which nothing else is handed while the graph lives. Run the code once
// eagerly before capturing it: what it builds on first use (plans, workspaces, cached
// tables, lazily loaded kernels) is then ready and outside the graph.
#pragma once

#include <functional>
#include <memory>

#include "core/device.h"

namespace fastdit {

class DeviceGraph {
 public:
  DeviceGraph() = default;
  // Whether `device`'s backend can capture graphs (CUDA can, the CPU cannot).
  static bool supported(Device device);
  // Runs body with the work it queues on `device` recorded instead of run.
  static DeviceGraph capture(Device device, const std::function<void()>& body);

  bool defined() const { return static_cast<bool>(graph_); }
  Device device() const { return device_; }
  // Queues one run of the recorded work on the device, in order with other work there.
  void replay() const;

 private:
  std::shared_ptr<void> graph_;
  Device device_;
};

}  // namespace fastdit
