// Pieces several subcommands share: device/dtype options, reading named inputs,
// comparing outputs.
#pragma once

#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "loader/transformer_loader.h"
#include "models/dit.h"
#include "trace/activation_trace.h"

namespace fastdit::cli {

struct RunOptions {
  std::string device = "cpu";
  std::string dtype = "float32";
  std::string fuse = "auto";  // fused projections: auto (on for CUDA), on, off
  Device parsed_device() const { return Device::parse(device); }
  DType parsed_dtype() const;  // float32 / bfloat16 / float16 only
  std::optional<bool> parsed_fuse() const;
  LoadOptions load_options(bool progress = false) const;
};
void add_run_options(CLI::App& cmd, RunOptions& options);

// A loaded model with the activation trace attached when the environment asks for it.
struct PreparedModel {
  LoadedTransformer loaded;
  std::shared_ptr<trace::ActivationTrace> trace;
  DiTModel& model() { return *loaded.model; }
};
PreparedModel prepare_model(const std::filesystem::path& path, const LoadOptions& options);

}  // namespace fastdit::cli
