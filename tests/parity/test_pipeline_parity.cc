// The denoising loop against the official diffusers WanPipeline and FluxPipeline: every case
// in tests/fixtures/pipeline (made by tools/reference/make_pipeline_cases.py) ends at the
// reference's final latents within rel_l2 1e-4 in float32 on the CPU, through the library
// (Wan: with either CFG batching) and through `fastdit generate` itself.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "sampling/denoise.h"
#include "sampling/flux_pipeline.h"
#include "sampling/pipeline_folder.h"
#include "support/test_support.h"
#include "trace/activation_trace.h"
#include "trace/trace_diff.h"

namespace fastdit::sampling {
namespace {

namespace fs = std::filesystem;

fs::path case_dir(const std::string& name) { return testing::source_path("tests/fixtures/pipeline/" + name); }

nlohmann::json sampling_json(const std::string& name) {
  std::ifstream in(case_dir(name) / "sampling.json");
  return nlohmann::json::parse(in);
}

Tensor fixture_tensor(const std::string& name, const std::string& file, const std::string& tensor) {
  return SafetensorsFile::open(case_dir(name) / file).tensor(tensor);
}

// The case's pipeline folder through the production readers and loaders, ready to denoise.
struct PipelineRun {
  std::unique_ptr<Scheduler> scheduler;
  LoadedTransformer transformer;
  std::optional<LoadedTransformer> transformer_2;
  DenoiseRequest request;
};

PipelineRun open_run(const std::string& name, CfgBatching batching) {
  const PipelineFolder folder = read_pipeline_folder(case_dir(name));
  const nlohmann::json sampling = sampling_json(name);
  PipelineRun run{load_scheduler(*folder.scheduler_config), load_transformer(folder.transformer, {}), {}, {}};
  run.request.expert = {run.transformer.model.get(), sampling["guidance_scale"].get<double>()};
  if (folder.settings.boundary_ratio) {
    run.transformer_2 = load_transformer(*folder.transformer_2, {});
    run.request.expert_2 = Expert{run.transformer_2->model.get(), sampling["guidance_scale_2"].get<double>()};
    run.request.boundary_ratio = folder.settings.boundary_ratio;
  }
  run.request.steps = sampling["steps"].get<int64_t>();
  run.request.latents = fixture_tensor(name, "noise.safetensors", "latents");
  run.request.prompt_embeds = fixture_tensor(name, "prompt_embeds.safetensors", "prompt_embeds");
  run.request.negative_prompt_embeds =
      fixture_tensor(name, "negative_prompt_embeds.safetensors", "negative_prompt_embeds");
  run.request.cfg_batching = batching;
  return run;
}

struct Param {
  std::string name;
  CfgBatching batching;
};

class PipelineParity : public ::testing::TestWithParam<Param> {};

TEST_P(PipelineParity, FinalLatentsMatchWanPipelineInFloat32OnCpu) {
  const auto& [name, batching] = GetParam();
  PipelineRun run = open_run(name, batching);
  const nlohmann::json sampling = sampling_json(name);
  std::vector<StepEvent> events;
  const Tensor latents =
      denoise(*run.scheduler, run.request, {{}, [&](const StepEvent& e) { events.push_back(e); }});
  const Tensor reference = fixture_tensor(name, "outputs.safetensors", "latents");
  ASSERT_EQ(latents.shape(), reference.shape());
  const double error = testing::rel_l2(latents, reference);
  EXPECT_LE(error, 1e-4) << name << " max_abs " << testing::max_abs_diff(latents, reference);
  std::ostringstream recorded;
  recorded << std::scientific << error;
  RecordProperty("rel_l2", recorded.str());
  // The same timesteps as the reference, and the same expert at each.
  ASSERT_EQ(events.size(), sampling["timesteps"].size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].timestep, sampling["timesteps"][i].get<float>()) << "step " << i;
    EXPECT_EQ(events[i].second_expert, sampling["experts"][i] == "transformer_2") << "step " << i;
  }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  return info.param.name + (info.param.batching == CfgBatching::Batched ? "_batched" : "_sequential");
}

INSTANTIATE_TEST_SUITE_P(Cases, PipelineParity,
                         ::testing::Values(Param{"wan_t2v_tiny", CfgBatching::Batched},
                                           Param{"wan_t2v_tiny", CfgBatching::Sequential},
                                           Param{"wan22_a14b_tiny", CfgBatching::Batched},
                                           Param{"wan22_a14b_tiny", CfgBatching::Sequential},
                                           Param{"wan_t2v_tiny_euler", CfgBatching::Batched}),
                         param_name);

TEST(PipelineParity, TheA14BCaseRunsBothExperts) {
  const nlohmann::json experts = sampling_json("wan22_a14b_tiny")["experts"];
  EXPECT_EQ(std::count(experts.begin(), experts.end(), "transformer"), 4);
  EXPECT_EQ(std::count(experts.begin(), experts.end(), "transformer_2"), 2);
}

// The activation trace, stepped by the loop's callback, labels each forward with its step.
TEST(PipelineTrace, RecordsCarryTheDenoisingStep) {
  const fs::path out = testing::temp_dir("pipeline_trace") / "trace.jsonl";
  PipelineRun run = open_run("wan_t2v_tiny", CfgBatching::Sequential);
  trace::TraceConfig config;
  config.enabled = true;
  config.layers = "^proj_out$";
  config.output = out.string();
  auto tracer = std::make_shared<trace::ActivationTrace>(config);
  ASSERT_EQ(tracer->attach(*run.transformer.model), 1u);
  denoise(*run.scheduler, run.request, {[&](const StepEvent& e) { tracer->set_step(e.index); }, {}});
  tracer.reset();
  std::map<int64_t, int> forwards_per_step;
  for (const auto& record : trace::read_trace(out.string())) forwards_per_step[record.step] += 1;
  EXPECT_EQ(forwards_per_step, (std::map<int64_t, int>{{0, 2}, {1, 2}, {2, 2}, {3, 2}}));  // cond and uncond
}

// The CLI is built at the top of the build folder, one level above the test binaries.
fs::path fastdit_binary() {
  const char* binary_dir = std::getenv("FASTDIT_BINARY_DIR");
  return (binary_dir ? fs::path(binary_dir) : fs::read_symlink("/proc/self/exe").parent_path().parent_path()) /
         "fastdit";
}

// The Flux cases the manifest lists (make_pipeline_cases.py --cases flux_dev_tiny
// flux_schnell_tiny writes them on the GPU machine).
std::vector<std::string> flux_pipeline_cases() {
  std::ifstream in(case_dir("manifest.json"));
  // The parsed manifest is a named local: a range-for over items() of the temporary would
  // iterate a destroyed object.
  const nlohmann::json manifest = nlohmann::json::parse(in);
  std::vector<std::string> names;
  for (const auto& [name, entry] : manifest.at("cases").items())
    if (name.starts_with("flux_")) names.push_back(name);
  return names;
}

// FluxPipeline's loop: the case's folder through the production readers, the request as
// generate builds it (ids, guidance, t / 1000, sigmas, mu from the image tokens).
class FluxPipelineParity : public ::testing::TestWithParam<std::string> {};
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(FluxPipelineParity);

TEST_P(FluxPipelineParity, FinalLatentsMatchFluxPipelineInFloat32OnCpu) {
  const std::string name = GetParam();
  const PipelineFolder folder = read_pipeline_folder(case_dir(name));
  ASSERT_EQ(folder.pipeline_class, "FluxPipeline");
  EXPECT_EQ(choose_pipeline(folder, folder.transformer).kind, PipelineKind::Flux);
  const nlohmann::json sampling = sampling_json(name);
  const auto scheduler = load_scheduler(*folder.scheduler_config);
  LoadedTransformer transformer = load_transformer(folder.transformer, {});
  DenoiseRequest request;
  request.expert = {transformer.model.get(), 1.0};
  request.steps = sampling["steps"].get<int64_t>();
  request.latents = fixture_tensor(name, "noise.safetensors", "latents");
  request.prompt_embeds = fixture_tensor(name, "prompt_embeds.safetensors", "prompt_embeds");
  const PackedGrid grid =
      flux_packed_grid(sampling["height"].get<int64_t>(), sampling["width"].get<int64_t>(), (*flux_defaults().vae_stride)[1]);
  prepare_flux_request(request, *transformer.model, *scheduler, grid,
                       fixture_tensor(name, "pooled_prompt_embeds.safetensors", "pooled_prompt_embeds"),
                       sampling["guidance_scale"].get<double>());
  EXPECT_DOUBLE_EQ(*request.mu, sampling["mu"].get<double>());
  std::vector<StepEvent> events;
  const Tensor latents = denoise(*scheduler, request, {{}, [&](const StepEvent& e) { events.push_back(e); }});
  const Tensor reference = fixture_tensor(name, "outputs.safetensors", "latents");
  ASSERT_EQ(latents.shape(), reference.shape());
  const double error = testing::rel_l2(latents, reference);
  EXPECT_LE(error, 1e-4) << name << " max_abs " << testing::max_abs_diff(latents, reference);
  std::ostringstream recorded;
  recorded << std::scientific << error;
  RecordProperty("rel_l2", recorded.str());
  ASSERT_EQ(events.size(), sampling["timesteps"].size());
  for (size_t i = 0; i < events.size(); ++i)
    EXPECT_EQ(events[i].timestep, sampling["timesteps"][i].get<float>()) << "step " << i;
}

INSTANTIATE_TEST_SUITE_P(Cases, FluxPipelineParity, ::testing::ValuesIn(flux_pipeline_cases()));

// `fastdit generate` on a Flux pipeline folder: packed latents in and out, the distilled
// guidance from --guidance, the ids and mu from --height / --width.
TEST_P(FluxPipelineParity, GenerateCommandWritesTheReferenceLatents) {
  const fs::path fastdit = fastdit_binary();
  if (!fs::exists(fastdit)) GTEST_SKIP() << "no fastdit binary at " << fastdit;
  {
    const std::string name = GetParam();
    const nlohmann::json sampling = sampling_json(name);
    const fs::path dir = case_dir(name), output = testing::temp_dir("generate_flux") / "latents.safetensors";
    std::ostringstream command;
    command << fastdit << " generate --model " << dir << " --prompt-embeds " << dir / "prompt_embeds.safetensors"
            << " --pooled-embeds " << dir / "pooled_prompt_embeds.safetensors" << " --noise "
            << dir / "noise.safetensors" << " --steps " << sampling["steps"] << " --guidance "
            << sampling["guidance_scale"] << " --height " << sampling["height"] << " --width " << sampling["width"]
            << " --output " << output << " > /dev/null 2>&1";
    ASSERT_EQ(std::system(command.str().c_str()), 0) << command.str();
    const Tensor latents = SafetensorsFile::open(output).tensor("latents");
    EXPECT_LE(testing::rel_l2(latents, fixture_tensor(name, "outputs.safetensors", "latents")), 1e-4) << name;
  }
}

// The whole command: `fastdit generate` on the pipeline folder writes the reference's latents.
TEST(GenerateCommand, WritesTheReferenceLatents) {
  const fs::path fastdit = fastdit_binary();
  if (!fs::exists(fastdit)) GTEST_SKIP() << "no fastdit binary at " << fastdit;
  for (const std::string name : {"wan_t2v_tiny", "wan22_a14b_tiny"}) {
    const nlohmann::json sampling = sampling_json(name);
    const fs::path dir = case_dir(name), output = testing::temp_dir("generate") / "latents.safetensors";
    std::ostringstream command;
    command << fastdit << " generate --model " << dir << " --prompt-embeds " << dir / "prompt_embeds.safetensors"
            << " --negative-embeds " << dir / "negative_prompt_embeds.safetensors"
            << " --noise " << dir / "noise.safetensors"
            << " --steps " << sampling["steps"] << " --guidance " << sampling["guidance_scale"] << " --output "
            << output;
    if (!sampling["guidance_scale_2"].is_null()) command << " --guidance-2 " << sampling["guidance_scale_2"];
    command << " > /dev/null 2>&1";
    ASSERT_EQ(std::system(command.str().c_str()), 0) << command.str();
    const Tensor latents = SafetensorsFile::open(output).tensor("latents");
    EXPECT_LE(testing::rel_l2(latents, fixture_tensor(name, "outputs.safetensors", "latents")), 1e-4) << name;
  }
}

}  // namespace
}  // namespace fastdit::sampling
