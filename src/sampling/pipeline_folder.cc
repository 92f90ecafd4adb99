#include "sampling/pipeline_folder.h"
#include "core/json_depth.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "configs/config_reader.h"
#include "core/error.h"

namespace fastdit::sampling {

namespace fs = std::filesystem;

namespace {

// A model_index.json component entry is [library, class], or [null, null] when absent.
std::optional<fs::path> component(ConfigReader& index, const fs::path& root, const std::string& name,
                                  const std::string& file) {
  index.ignore(name, "read as a component entry");
  const nlohmann::json& json = index.json();
  if (!json.contains(name) || json.at(name).is_null()) return std::nullopt;
  const nlohmann::json& entry = json.at(name);
  FASTDIT_CHECK(entry.is_array() && entry.size() == 2, index.source(), ": key '", name,
                "' must be [library, class], found ", entry.dump());
  if (entry[1].is_null()) return std::nullopt;
  const fs::path folder = root / name;
  FASTDIT_CHECK(fs::exists(folder / file), index.source(), " names a ", name, " (", entry[1].dump(), ") but ",
                (folder / file).string(), " does not exist");
  return folder;
}

// The VAE's frames and pixels per latent element (diffusers AutoencoderKLWan's defaults are 4 and 8).
std::array<int64_t, 3> vae_stride(const fs::path& config_path) {
  std::ifstream in(config_path);
  FASTDIT_CHECK(in.good(), config_path.string(), ": cannot open");
  const nlohmann::json json = nlohmann::json::parse(bounded_json_text(in, config_path.string()), nullptr, /*allow_exceptions=*/false);
  FASTDIT_CHECK(json.is_object(), config_path.string(), ": not a JSON object");
  const auto factor = [&](const char* key, int64_t fallback) {
    if (!json.contains(key) || json.at(key).is_null()) return fallback;
    FASTDIT_CHECK(json.at(key).is_number_integer() && json.at(key).get<int64_t>() > 0, config_path.string(), ": ",
                  key, " must be a positive integer");
    return json.at(key).get<int64_t>();
  };
  const int64_t spatial = factor("scale_factor_spatial", 8);
  return {factor("scale_factor_temporal", 4), spatial, spatial};
}

}  // namespace

PipelineFolder read_pipeline_folder(const fs::path& path) {
  FASTDIT_CHECK(fs::exists(path), path.string(), ": no such file or directory");
  FASTDIT_CHECK(fs::is_directory(path), path.string(), ": expected a pipeline or transformer directory");
  PipelineFolder folder;
  if (!fs::exists(path / "model_index.json")) {
    const bool nested = !fs::exists(path / "config.json") && fs::exists(path / "transformer" / "config.json");
    FASTDIT_CHECK(nested || fs::exists(path / "config.json"), path.string(),
                  ": none of model_index.json (pipeline folder), config.json or transformer/config.json found");
    folder.transformer = nested ? path / "transformer" : path;
    return folder;
  }
  ConfigReader index = ConfigReader::from_file((path / "model_index.json").string());
  folder.pipeline_class = index.get_string("_class_name");
  FASTDIT_CHECK(folder.pipeline_class == "WanPipeline", index.source(), ": pipeline '", folder.pipeline_class,
                "' is not supported (generate runs text-to-video WanPipeline folders)");
  const auto transformer = component(index, path, "transformer", "config.json");
  FASTDIT_CHECK(transformer.has_value(), index.source(), ": no transformer");
  folder.transformer = *transformer;
  folder.transformer_2 = component(index, path, "transformer_2", "config.json");
  if (const auto scheduler = component(index, path, "scheduler", "scheduler_config.json"))
    folder.scheduler_config = *scheduler / "scheduler_config.json";
  if (const auto vae = component(index, path, "vae", "config.json"))
    folder.settings.vae_stride = vae_stride(*vae / "config.json");
  if (index.has("boundary_ratio")) folder.settings.boundary_ratio = index.get_float("boundary_ratio");
  index.ignore("boundary_ratio", "null or absent: one expert");
  // TI2V-5B sets expand_timesteps: per-token timesteps, all equal to t for text-to-video,
  // which the model computes the same from the [B] timestep at a fraction of the cost.
  index.get_bool("expand_timesteps", false);
  for (const char* key : {"text_encoder", "tokenizer"})
    index.ignore(key, "generate takes prompt embeddings, not prompts");
  for (const char* key : {"_diffusers_version", "_name_or_path"}) index.ignore(key, "bookkeeping");
  index.finish();
  folder.settings.validate(index.source());
  return folder;
}

}  // namespace fastdit::sampling
