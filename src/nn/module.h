// Module tree: dotted names from the DiT root, parameters declared with their shape
// at construction (a model can be built and checked without weights), and forward
// hooks. The state-dict surface (named_modules / named_parameters) matches PyTorch's.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace fastdit::nn {

// How a parameter's dtype is chosen at load: the run dtype, or float32 always (the
// reference's _keep_in_fp32_modules).
enum class DTypePolicy { RunDType, KeepFloat32 };

struct Parameter {
  Shape shape;
  DTypePolicy policy = DTypePolicy::RunDType;
  // May be stored as float8 e4m3fn when the load asks for FP8 (LoadOptions::precision):
  // a [rows, cols] linear weight its module marked (ReplicatedLinear::allow_fp8).
  bool fp8_capable = false;
  Tensor value;  // undefined until loaded
  // Set when value is float8_e4m3fn: float32 [rows], value[r, :] · row_scales[r] is the
  // weight (ops::quantize_fp8_rows of the run-dtype weight).
  Tensor row_scales;

  const Tensor& operator*() const { return value; }
};

class Module;

// Observes module outputs; the activation trace is one.
class ForwardHook {
 public:
  virtual ~ForwardHook() = default;
  virtual void on_output(const Module& module, std::string_view tensor, const Tensor& value) = 0;
};

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Dotted name from the root ("" for the root itself), set by assign_names().
  const std::string& name() const { return name_; }
  const std::string& type_name() const { return type_name_; }
  // Names every module of the tree from this one down; call on the root once built.
  void assign_names(const std::string& prefix = "");

  // Pre-order, this module first (name ""), like torch's named_modules().
  std::vector<std::pair<std::string, Module*>> named_modules();
  std::vector<std::pair<std::string, Parameter*>> named_parameters();
  Parameter* find_parameter(std::string_view dotted_name);
  Module* find_module(std::string_view dotted_name);

  void add_forward_hook(std::shared_ptr<ForwardHook> hook);
  void clear_forward_hooks();
  bool has_forward_hooks() const { return hooks_ != nullptr; }

 protected:
  template <class M, class... Args>
  M* add_module(std::string local_name, Args&&... args) {
    auto child = std::make_unique<M>(std::forward<Args>(args)...);
    M* raw = child.get();
    children_.emplace_back(std::move(local_name), std::move(child));
    return raw;
  }
  Parameter* add_parameter(std::string local_name, Shape shape,
                           DTypePolicy policy = DTypePolicy::RunDType);

  // Every forward passes each output through here. With no hooks attached this is
  // one pointer test. FASTDIT_NO_FORWARD_HOOKS (CMake FASTDIT_FORWARD_HOOKS=OFF) removes
  // the test itself; that build exists only to show the test costs nothing measurable.
  const Tensor& emit(const Tensor& out, std::string_view tensor_name = "out") const {
#ifndef FASTDIT_NO_FORWARD_HOOKS
    if (hooks_) [[unlikely]]
      run_hooks(tensor_name, out);
#else
    (void)tensor_name;
#endif
    return out;
  }

 private:
  void run_hooks(std::string_view tensor_name, const Tensor& out) const;
  void collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out);

  std::string type_name_;
  std::string name_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
  std::vector<std::pair<std::string, std::unique_ptr<Parameter>>> parameters_;
  std::unique_ptr<std::vector<std::shared_ptr<ForwardHook>>> hooks_;
};

// A numbered list of children ("blocks.0", "blocks.1", ...).
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  template <class M, class... Args>
  M* append(Args&&... args) {
    M* m = add_module<M>(std::to_string(items_.size()), std::forward<Args>(args)...);
    items_.push_back(m);
    return m;
  }
  size_t size() const { return items_.size(); }
  Module* operator[](size_t i) const { return items_.at(i); }
  template <class M>
  M* at(size_t i) const { return static_cast<M*>(items_.at(i)); }

 private:
  std::vector<Module*> items_;
};

}  // namespace fastdit::nn
