#include "models/captured_forward.h"

#include "ops/ops.h"

namespace fastdit {

namespace {

Device parameter_device(DiTModel& model) {
  for (const auto& [name, parameter] : model.named_parameters()) {
    if (parameter->value.defined()) return parameter->value.device();
  }
  FASTDIT_FAIL("CUDA graph capture of ", model.type_name(), ": its parameters are not loaded");
}

// The activation trace and other hooks read module outputs on the host mid-forward.
void check_no_forward_hooks(DiTModel& model) {
  for (const auto& [name, module] : model.named_modules()) {
    FASTDIT_CHECK(!module->has_forward_hooks(), "CUDA graph capture of ", model.type_name(), ": module '",
                  name.empty() ? "(root)" : name,
                  "' has a forward hook (the activation trace?), which reads its output on the host "
                  "during the forward; a graph cannot replay that (unset FASTDIT_TRACE_ACTIVATIONS)");
  }
}

}  // namespace

CapturedForward::CapturedForward(DiTModel& model) : model_(model), device_(parameter_device(model)) {
  FASTDIT_CHECK(DeviceGraph::supported(device_), "CUDA graph capture of ", model.type_name(), ": the model is on ",
                device_.str(), ", which has no device graphs (CUDA devices only)");
}

TensorMap CapturedForward::forward(const TensorMap& inputs, const ArgMap& args) {
  Signature signature;
  const ModelIO io = model_.io();
  for (const auto& [name, tensor] : inputs) {
    FASTDIT_CHECK(tensor.defined(), "CUDA graph forward: input '", name, "' is undefined");
    std::get<0>(signature).emplace_back(name, tensor.shape(), tensor.dtype());
    const TensorInputSpec* spec = io.find_tensor(name);
    if (spec && spec->read_on_host)
      std::get<2>(signature)[name] = ops::cast(tensor.to(Device::cpu()), DType::Float32).to_float_vector();
  }
  for (const auto& [name, value] : args) std::get<1>(signature) += name + "=" + arg_value_str(value) + ";";
  const auto found = graphs_.find(signature);
  if (found == graphs_.end()) return capture(signature, inputs, args);
  Captured& captured = found->second;
  for (auto& [name, buffer] : captured.inputs)
    if (!std::get<2>(signature).count(name)) buffer.copy_(inputs.at(name));  // host inputs: the same values
  captured.graph.replay();
  TensorMap outputs;
  for (const auto& [name, buffer] : captured.outputs) outputs[name] = buffer.clone();
  return outputs;
}

TensorMap CapturedForward::capture(const Signature& signature, const TensorMap& inputs, const ArgMap& args) {
  check_no_forward_hooks(model_);
  Captured captured;
  for (const auto& [name, tensor] : inputs) {
    const bool host = std::get<2>(signature).count(name) > 0;
    Tensor buffer = Tensor::empty(tensor.shape(), tensor.dtype(), host ? Device::cpu() : device_);
    buffer.copy_(tensor);
    captured.inputs[name] = buffer;
  }
  const TensorMap eager = model_.forward(captured.inputs, args);
  captured.graph = DeviceGraph::capture(device_, [&] { captured.outputs = model_.forward(captured.inputs, args); });
  graphs_.emplace(signature, std::move(captured));
  return eager;
}

}  // namespace fastdit
