// The interface every DiT family implements, and the registry that maps a
// config.json `_class_name` to a factory.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "configs/config_reader.h"
#include "configs/dit_config.h"
#include "loader/param_mapping.h"
#include "models/model_io.h"
#include "nn/module.h"

namespace fastdit {

namespace nn {
class SequenceParallel;
}

// Latent-space sizes for synthetic inputs (benchmarks, smoke runs).
struct ExampleShape {
  int64_t batch = 1;
  int64_t frames = 1;  // latent frames (image models accept only 1)
  int64_t height = 64;  // latent height
  int64_t width = 64;   // latent width
  int64_t text_len = 512;
};

// The latent size of a video of frames x height x width pixels through a VAE that
// compresses by `vae_stride` (t, h, w): frames must be 1 + a multiple of the temporal
// stride, height and width multiples of the spatial ones, every size positive and at most
// 2^20 pixels; an error names `what` (a flag or a file) otherwise. generate, run --example and
// bench share it, so what one refuses no other floors.
ExampleShape video_latent_shape(int64_t batch, int64_t frames, int64_t height, int64_t width, int64_t text_len,
                                const std::array<int64_t, 3>& vae_stride, const std::string& what);

class DiTModel : public nn::Module {
 public:
  using nn::Module::Module;
  virtual const DiTArchConfig& arch_config() const = 0;
  // Checkpoint name → native parameter rules (diffusers and original layouts).
  virtual const ParamNameMapping& param_names_mapping() const = 0;
  // The forward's tensor inputs, non-tensor arguments and output heads.
  virtual ModelIO io() const = 0;
  // Checks the call against io() (names, ranks, element kinds, argument types; declared
  // defaults filled in), runs the model and returns every output head by name.
  TensorMap forward(const TensorMap& inputs, const ArgMap& args = {});
  // Random inputs of the given latent shape, as the family's pipeline would feed them.
  virtual TensorMap example_inputs(const ExampleShape& shape, uint64_t seed) const = 0;
  // The non-tensor arguments those inputs go with (a family whose forward needs some: the
  // frame count, fps...); none by default.
  virtual ArgMap example_args(const ExampleShape&) const { return {}; }

  // Precision fp8's 8-bit self-attention (ops::attention_8bit, where it serves) for this
  // model's forwards: set by the loader for a family that allows it, unless
  // FASTDIT_FP8_ATTENTION=off. A family allows it once its accuracy at real shapes is
  // measured (DESIGN.md, Precision).
  virtual bool allows_quantized_attention() const { return false; }
  void set_quantized_attention(bool enabled) { quantized_attention_ = enabled; }

 protected:
  // The model's math on a checked call.
  virtual TensorMap run(const TensorMap& inputs, const ArgMap& args) = 0;

 private:
  bool quantized_attention_ = false;
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

// Registers a class name (the C++ form of EntryClass). The built-in families register in
// register_builtin_dits() (models/builtin.cc), called once before the registry's first
// lookup; an embedding program or a test adds its own classes with register_dit.
bool register_dit(const std::string& class_name, DiTFactory factory);
void register_builtin_dits();
// Builds the model for config["_class_name"]; unknown names list the registered ones.
std::unique_ptr<DiTModel> create_dit(ConfigReader& config, const BuildOptions& options = {});
std::vector<std::string> registered_dits();

}  // namespace fastdit
