// TransformerLoader: config.json → registry → model → mapped, strict weight load.
#pragma once

#include <filesystem>
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

struct LoadOptions {
  Device device = Device::cpu();
  DType dtype = DType::Float32;  // the run dtype; keep-float32 parameters stay float32
  bool progress = false;         // progress lines on stderr
  // Called as the weights arrive (parameters in place, of all), e.g. a caller's progress bar.
  std::function<void(size_t done, size_t total)> on_weights;
  // Fused projections (BuildOptions); unset = on for CUDA, off for the CPU oracle.
  std::optional<bool> fuse_projections;
  const nn::SequenceParallel* sequence_parallel = nullptr;  // BuildOptions
  BuildOptions build_options() const { return {fuse_projections.value_or(device.is_cuda()), sequence_parallel}; }
};

struct LoadedTransformer {
  std::unique_ptr<DiTModel> model;
  std::filesystem::path dir;        // the transformer folder that was read
  std::vector<PieceRecord> pieces;  // how every checkpoint tensor reached the model
};

// Fills every parameter with seeded uniform values (norm weights around 1) in the dtype
// its policy gives, on options.device: a model without a checkpoint, for benchmarks.
void randomize_parameters(DiTModel& model, const LoadOptions& options, uint64_t seed);

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
