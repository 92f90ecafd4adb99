// A whole DiT forward captured once into a device graph (a CUDA graph) and replayed, so
// that small shapes are not bound by kernel launches.
//
// One graph per input signature (the inputs' names, shapes and dtypes, and the values of
// the non-tensor arguments and of the inputs declared read_on_host, which the forward
// reads on the host; those inputs stay on the host). The first call
// with a signature copies the inputs into device buffers of its own, runs the forward
// eagerly on them (which also builds what the capture must find ready: GEMM and
// attention plans, the cuBLASLt workspace, rotary and timestep tables) and returns that
// output, then captures the same forward. Every later call copies its inputs into those
// buffers (from any device, converting nothing: same dtypes), replays, and returns
// copies of the captured outputs. The model's weights must not be replaced while a graph
// of it lives: the graph reads them where they were at capture.
//
// What a graph cannot hold fails at capture with an error that names it: a forward hook
// (the activation trace reads every output on the host), a host copy or wait inside the
// forward, a model on the CPU.
#pragma once

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/device_graph.h"
#include "models/dit.h"

namespace fastdit {

class CapturedForward {
 public:
  // The model's parameters must be loaded; they give the device.
  explicit CapturedForward(DiTModel& model);

  // The model's forward on these inputs: captured on the first call of a signature,
  // replayed on the later ones.
  TensorMap forward(const TensorMap& inputs, const ArgMap& args = {});

  size_t graph_count() const { return graphs_.size(); }

 private:
  using Signature = std::tuple<std::vector<std::tuple<std::string, Shape, DType>>, std::string,
                               std::map<std::string, std::vector<float>>>;
  struct Captured {
    TensorMap inputs;   // the buffers every replay reads
    TensorMap outputs;  // the buffers every replay writes
    DeviceGraph graph;
  };

  TensorMap capture(const Signature& signature, const TensorMap& inputs, const ArgMap& args);

  DiTModel& model_;
  Device device_;
  std::map<Signature, Captured> graphs_;
};

}  // namespace fastdit
