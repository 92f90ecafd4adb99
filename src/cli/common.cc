#include "cli/common.h"

#include "loader/safetensors.h"

namespace fastdit::cli {

DType RunOptions::parsed_dtype() const {
  const DType d = parse_dtype(dtype);
  FASTDIT_CHECK(d == DType::Float32 || d == DType::BFloat16 || d == DType::Float16, "--dtype ", dtype,
                ": models run in float32, bfloat16 or float16");
  return d;
}

std::optional<bool> RunOptions::parsed_fuse() const {
  if (fuse == "auto") return std::nullopt;
  FASTDIT_CHECK(fuse == "on" || fuse == "off", "--fuse ", fuse, ": expected auto, on or off");
  return fuse == "on";
}

LoadOptions RunOptions::load_options(bool progress) const {
  LoadOptions options{parsed_device(), parsed_dtype(), progress};
  options.fuse_projections = parsed_fuse();
  return options;
}

void add_run_options(CLI::App& cmd, RunOptions& options) {
  cmd.add_option("--device", options.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd.add_option("--dtype", options.dtype, "float32, bfloat16 or float16")->capture_default_str();
  cmd.add_option("--fuse", options.fuse, "fused q|k|v projections: auto (on for cuda), on, off")
      ->capture_default_str();
}

PreparedModel prepare_model(const std::filesystem::path& path, const LoadOptions& options) {
  trace::trace_config_from_env();  // a bad trace setting fails before the (slow) load
  PreparedModel prepared{load_transformer(path, options), nullptr};
  prepared.trace = trace::attach_from_env(*prepared.loaded.model);
  return prepared;
}

}  // namespace fastdit::cli
