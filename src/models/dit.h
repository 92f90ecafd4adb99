// The interface every DiT family implements, and the registry that maps a
// config.json `_class_name` to a factory.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "configs/config_reader.h"
#include "configs/dit_config.h"
#include "loader/param_mapping.h"
#include "nn/module.h"

namespace fastdit {

namespace nn {
class SequenceParallel;
}

// Inputs named as the reference forward's keyword arguments.
using TensorMap = std::map<std::string, Tensor>;

// Latent-space sizes for synthetic inputs (benchmarks, smoke runs).
struct ExampleShape {
  int64_t batch = 1;
  int64_t frames = 1;  // latent frames (image models accept only 1)
  int64_t height = 64;  // latent height
  int64_t width = 64;   // latent width
  int64_t text_len = 512;
};

class DiTModel : public nn::Module {
 public:
  using nn::Module::Module;
  virtual const DiTArchConfig& arch_config() const = 0;
  // Checkpoint name → native parameter rules (diffusers and original layouts).
  virtual const ParamNameMapping& param_names_mapping() const = 0;
  // Names of the accepted inputs; `required` are those that must be present.
  virtual std::vector<std::string> input_names(bool required_only) const = 0;
  // Runs the model; returns the outputs by name ("sample" for the prediction).
  virtual TensorMap forward(const TensorMap& inputs) = 0;
  // Random inputs of the given latent shape, as the family's pipeline would feed them.
  virtual TensorMap example_inputs(const ExampleShape& shape, uint64_t seed) const = 0;
};

// Choices made when a model is built that change its parameter surface.
struct BuildOptions {
  // Merge projections that read the same input into one GEMM (Wan: q|k|v of self-
  // attention, k|v of cross-attention; SD3: q|k|v of each stream) through the loader's
  // merge mapping.
  bool fuse_projections = false;
  // The sequence-parallel group the model's tokens are sharded over (null: one process).
  // The model shards its tokens after the patch embedding, its attention takes part in
  // the exchange, and it gathers the tokens before unpatchifying; it must outlive the model.
  const nn::SequenceParallel* sequence_parallel = nullptr;
};

using DiTFactory = std::function<std::unique_ptr<DiTModel>(ConfigReader& config, const BuildOptions& options)>;

// Registers a class name at static initialisation (the C++ form of EntryClass).
bool register_dit(const std::string& class_name, DiTFactory factory);
// Builds the model for config["_class_name"]; unknown names list the registered ones.
std::unique_ptr<DiTModel> create_dit(ConfigReader& config, const BuildOptions& options = {});
std::vector<std::string> registered_dits();

}  // namespace fastdit
