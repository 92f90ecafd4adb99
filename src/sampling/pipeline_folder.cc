#include "sampling/pipeline_folder.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "configs/config_reader.h"
#include "core/error.h"
#include "core/files.h"
#include "sampling/flux_pipeline.h"
#include "sampling/scheduler.h"

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
  const nlohmann::json json = nlohmann::json::parse(read_regular_file(config_path), nullptr, /*allow_exceptions=*/false);
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

// FluxPipeline's vae_scale_factor: 2 ** (len(block_out_channels) - 1).
std::array<int64_t, 3> flux_vae_stride(const fs::path& config_path) {
  ConfigReader vae = ConfigReader::from_file(config_path.string());
  const auto& json = vae.json();
  FASTDIT_CHECK(json.contains("block_out_channels") && json.at("block_out_channels").is_array() &&
                    !json.at("block_out_channels").empty() && json.at("block_out_channels").size() < 16,
                config_path.string(), ": block_out_channels must be a non-empty list");
  const int64_t factor = int64_t{1} << (json.at("block_out_channels").size() - 1);
  return {1, factor, factor};
}

nlohmann::json read_json(const fs::path& path) {
  const std::string text = read_regular_file(path);
  check_json_depth(text, 256, path.string());
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  FASTDIT_CHECK(json.is_object(), path.string(), ": not a JSON object");
  return json;
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
  const bool flux = folder.pipeline_class == "FluxPipeline";
  FASTDIT_CHECK(folder.pipeline_class == "WanPipeline" || flux, index.source(), ": pipeline '",
                folder.pipeline_class,
                "' is not supported (generate runs text-to-video WanPipeline and text-to-image FluxPipeline folders)");
  const auto transformer = component(index, path, "transformer", "config.json");
  FASTDIT_CHECK(transformer.has_value(), index.source(), ": no transformer");
  folder.transformer = *transformer;
  if (flux) {
    if (const auto scheduler = component(index, path, "scheduler", "scheduler_config.json"))
      folder.scheduler_config = *scheduler / "scheduler_config.json";
    if (const auto vae = component(index, path, "vae", "config.json"))
      folder.settings.vae_stride = flux_vae_stride(*vae / "config.json");
    for (const char* key :
         {"text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "image_encoder", "feature_extractor"})
      index.ignore(key, "generate takes prompt embeddings, not prompts (and no IP-Adapter images)");
    for (const char* key : {"_diffusers_version", "_name_or_path"}) index.ignore(key, "bookkeeping");
    index.finish();
    return folder;
  }
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

PipelineChoice choose_pipeline(const PipelineFolder& folder, const fs::path& transformer) {
  const fs::path config_path = fs::is_directory(transformer) ? transformer / "config.json" : transformer;
  const nlohmann::json config = read_json(config_path);
  const std::string class_name = config.value("_class_name", std::string());
  const bool flux_transformer = class_name == "FluxTransformer2DModel";
  PipelineChoice choice;
  if (folder.pipeline_class == "FluxPipeline" || (folder.pipeline_class.empty() && flux_transformer)) {
    FASTDIT_CHECK(flux_transformer, config_path.string(), ": FluxPipeline runs FluxTransformer2DModel, not '",
                  class_name, "'");
    choice.kind = PipelineKind::Flux;
    const auto found = config.find("guidance_embeds");
    choice.guidance_embeds = found != config.end() && found->is_boolean() && found->get<bool>();
  }
  return choice;
}

SamplingConfig pipeline_defaults(PipelineKind kind) {
  if (kind == PipelineKind::Flux) return flux_defaults();
  SamplingConfig s;  // WanPipeline.__call__'s (UniPC flow shift 3 as its Wan2.1 scheduler configs)
  s.scheduler = "UniPCMultistepScheduler";
  s.steps = 50;
  s.guidance_scale = 5.0;
  s.height = 480;
  s.width = 832;
  s.frames = 81;
  s.fps = 16;
  s.seed = 0;
  s.vae_stride = std::array<int64_t, 3>{4, 8, 8};
  return s;
}

nlohmann::json default_pipeline_scheduler(const PipelineChoice& choice, const std::string& class_name) {
  if (choice.kind == PipelineKind::Flux && class_name == "FlowMatchEulerDiscreteScheduler")
    return flux_scheduler_config(choice.guidance_embeds);
  return default_scheduler_config(class_name);
}

}  // namespace fastdit::sampling
