// TransformerLoader: config.json → registry → model → mapped, strict weight load.
#pragma once

#include <filesystem>
#include <map>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "loader/param_mapping.h"
#include "loader/safetensors.h"
#include "models/dit.h"

namespace fastdit {

// A run dtype by name (parse_dtype's spellings): float32, bfloat16 or float16; `what`
// names the setting in the error.
DType parse_run_dtype(std::string_view name, std::string_view what);

// How the block linears compute (DESIGN.md, precision). Bf16: every linear in the run
// dtype, the default and the reference's numbers. Fp8: the linears a model marks
// (nn::allow_fp8_linears: the attention projections and FFNs of its transformer blocks)
// keep float8 e4m3 weights with one scale per output channel, quantized once at load,
// and run FP8 GEMMs with activations quantized per token (ops::linear_fp8); needs a CUDA
// device and run dtype bfloat16.
enum class Precision { Bf16, Fp8 };
const char* precision_name(Precision precision);  // "bf16", "fp8"
// "bf16" or "fp8"; `what` names the setting in the error.
Precision parse_precision(std::string_view name, std::string_view what);

struct LoadOptions {
  Device device = Device::cpu();
  DType dtype = DType::Float32;  // the run dtype; keep-float32 parameters stay float32
  bool progress = false;         // progress lines on stderr
  // Called as the weights arrive (parameters in place, of all), e.g. a caller's progress bar.
  std::function<void(size_t done, size_t total)> on_weights;
  // Fused projections (BuildOptions); unset = on for CUDA, off for the CPU oracle.
  std::optional<bool> fuse_projections;
  const nn::SequenceParallel* sequence_parallel = nullptr;  // BuildOptions
  Precision precision = Precision::Bf16;
  BuildOptions build_options() const { return {fuse_projections.value_or(device.is_cuda()), sequence_parallel}; }
};

struct LoadedTransformer {
  std::unique_ptr<DiTModel> model;
  std::filesystem::path dir;        // the transformer folder that was read
  std::vector<PieceRecord> pieces;  // how every checkpoint tensor reached the model
};

// Fails unless `options` can run their precision (fp8: a CUDA device and run dtype
// bfloat16); `what` names the setting ("--precision", "LoadOptions::precision").
void check_precision(const LoadOptions& options, std::string_view what);

// The dtype a parameter loads in for a run in `run_dtype`: its policy's (keep-float32
// parameters stay float32), float8_e4m3fn for an FP8-capable one under Precision::Fp8.
DType parameter_dtype(const nn::Parameter& param, DType run_dtype, Precision precision = Precision::Bf16);

// Fills every parameter with seeded uniform values (norm weights around 1) in the dtype
// its policy gives, on options.device: a model without a checkpoint, for benchmarks.
void randomize_parameters(DiTModel& model, const LoadOptions& options, uint64_t seed);

// Memory bounds checked before allocating (DESIGN.md, errors). The bytes the model's
// parameters take in their load dtypes; a parameter whose size leaves int64 is an error
// naming it and the model's config.
size_t parameter_bytes(DiTModel& model, DType run_dtype, const std::string& config_source,
                       Precision precision = Precision::Bf16);
// A lower bound of what one forward over `latents` needs besides the weights: three hidden
// states of the token count a patch of at most 4 latent pixels gives (the residual, the
// normed input, one projection), in the run dtype.
size_t forward_activation_bytes(const DiTModel& model, const Shape& latents, DType run_dtype);
// Fails before a forward over `latents` that cannot fit on `device` (require_memory).
void require_forward_memory(const DiTModel& model, const Shape& latents, DType run_dtype, Device device,
                            size_t extra_bytes = 0);

// One checkpoint tensor as the name mapping sees it: a safetensors header entry, or a row
// of a key dump (tools/reference/dump_*_keys.py, `fastdit keys --json`).
struct CheckpointTensor {
  std::string name;
  Shape shape;
  DType dtype = DType::Float32;
  std::string file;  // where it is stored, for messages; empty: the caller names the source once
};

// How a checkpoint's tensors reach a model's parameters, and everything in the way.
struct CheckpointMatch {
  enum class Problem {
    Extra,       // a checkpoint tensor the mapping sends to no parameter
    Missing,     // a parameter no checkpoint tensor maps to
    Mismatched,  // a parameter its tensors cannot fill (shape, rows of a merge, a non-float dtype)
  };
  struct Finding {
    Problem problem;
    std::string name;     // the checkpoint tensor (Extra) or the parameter
    std::string message;  // the whole story, as the loader's error tells it
  };
  // Every parameter that matches: its pieces in row order.
  std::map<std::string, std::vector<PieceRecord>> pieces;
  // Extra in checkpoint order, then Missing and Mismatched in parameter order.
  std::vector<Finding> findings;
};

// Maps every tensor through model.param_names_mapping() and checks that the pieces tile
// every parameter exactly: the loader's whole check, each problem kept instead of the first
// thrown. `location` names the checkpoint in messages.
CheckpointMatch match_checkpoint(DiTModel& model, const std::vector<CheckpointTensor>& tensors,
                                 const std::string& location);
// The header entries of a checkpoint, in its order, each with its file.
std::vector<CheckpointTensor> checkpoint_tensors(const SafetensorsCheckpoint& checkpoint);

// A pipeline folder (model_index.json / transformer/) or the transformer folder itself.
std::filesystem::path resolve_transformer_dir(const std::filesystem::path& path);
// Builds the model from config.json alone (a model dir or the config file itself);
// parameters keep their shapes, no values.
std::unique_ptr<DiTModel> build_transformer(const std::filesystem::path& path,
                                            const BuildOptions& options = {});
LoadedTransformer load_transformer(const std::filesystem::path& path, const LoadOptions& options);
// All tensors of a safetensors file as the model's named inputs, on `device`; an unknown
// name or a missing required input is an error naming the file.
TensorMap read_model_inputs(const std::filesystem::path& path, const DiTModel& model, Device device);

// The checkpoint tensors back, in the layout they were loaded from (exact inverse of
// the load's mapping), sorted by name.
std::vector<std::pair<std::string, Tensor>> export_checkpoint(const LoadedTransformer& loaded);

}  // namespace fastdit
