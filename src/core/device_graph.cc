#include "core/device_graph.h"

#include "core/tensor.h"

namespace fastdit {

bool DeviceGraph::supported(Device device) {
  return device_hooks(device.type).capture_graph != nullptr;
}

DeviceGraph DeviceGraph::capture(Device device, const std::function<void()>& body) {
  const DeviceHooks& hooks = device_hooks(device.type);
  FASTDIT_CHECK(hooks.capture_graph != nullptr, "device graphs: ", device.str(),
                " cannot capture them (CUDA devices only)");
  DeviceGraph graph;
  graph.graph_ = std::shared_ptr<void>(hooks.capture_graph(device.index, body), hooks.destroy_graph);
  graph.device_ = device;
  return graph;
}

void DeviceGraph::replay() const {
  FASTDIT_CHECK(defined(), "replay of an empty DeviceGraph");
  device_hooks(device_.type).replay_graph(graph_.get());
}

}  // namespace fastdit
