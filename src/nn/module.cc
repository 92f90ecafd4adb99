#include "nn/module.h"

namespace fastdit::nn {

namespace {
std::string join(const std::string& prefix, const std::string& local) {
  return prefix.empty() ? local : prefix + "." + local;
}
}  // namespace

void Module::assign_names(const std::string& prefix) {
  name_ = prefix;
  for (auto& [local, child] : children_) child->assign_names(join(prefix, local));
}

void Module::collect_modules(const std::string& prefix,
                             std::vector<std::pair<std::string, Module*>>& out) {
  out.emplace_back(prefix, this);
  for (auto& [local, child] : children_) child->collect_modules(join(prefix, local), out);
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  collect_modules("", out);
  return out;
}

std::vector<std::pair<std::string, Parameter*>> Module::named_parameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (auto& [prefix, module] : named_modules())
    for (auto& [local, param] : module->parameters_) out.emplace_back(join(prefix, local), param.get());
  return out;
}

Parameter* Module::find_parameter(std::string_view dotted_name) {
  const size_t dot = dotted_name.rfind('.');
  Module* owner = dot == std::string_view::npos ? this : find_module(dotted_name.substr(0, dot));
  if (!owner) return nullptr;
  const std::string_view local = dot == std::string_view::npos ? dotted_name : dotted_name.substr(dot + 1);
  for (auto& [name, param] : owner->parameters_)
    if (name == local) return param.get();
  return nullptr;
}

Module* Module::find_module(std::string_view dotted_name) {
  Module* current = this;
  while (!dotted_name.empty() && current) {
    const size_t dot = dotted_name.find('.');
    const std::string_view head = dotted_name.substr(0, dot);
    Module* next = nullptr;
    for (auto& [local, child] : current->children_)
      if (local == head) next = child.get();
    current = next;
    dotted_name = dot == std::string_view::npos ? std::string_view{} : dotted_name.substr(dot + 1);
  }
  return current;
}

Parameter* Module::add_parameter(std::string local_name, Shape shape, DTypePolicy policy) {
  for (auto& [name, param] : parameters_)
    FASTDIT_CHECK(name != local_name, "parameter '", local_name, "' declared twice in ", type_name_);
  auto param = std::make_unique<Parameter>();
  param->shape = std::move(shape);
  param->policy = policy;
  Parameter* raw = param.get();
  parameters_.emplace_back(std::move(local_name), std::move(param));
  return raw;
}

void Module::add_forward_hook(std::shared_ptr<ForwardHook> hook) {
  if (!hooks_) hooks_ = std::make_unique<std::vector<std::shared_ptr<ForwardHook>>>();
  hooks_->push_back(std::move(hook));
}

void Module::clear_forward_hooks() { hooks_.reset(); }

void Module::run_hooks(std::string_view tensor_name, const Tensor& out) const {
  for (const auto& hook : *hooks_) hook->on_output(*this, tensor_name, out);
}

}  // namespace fastdit::nn
