// fastdit generate: text-to-video (Wan) or text-to-image (Flux) latents from prompt
// embeddings. The model is a diffusers WanPipeline or FluxPipeline folder (model_index.json:
// transformer, transformer_2, scheduler, boundary_ratio), a transformer folder, or a config
// with random weights; the sampling settings come from the pipeline's defaults < the model
// folder < a preset < flags. --compare measures the final latents against a reference's
// (fp8 against bf16 from the same noise, say): rel_l2, max_abs, cosine and PSNR, judged
// with --max-rel-l2.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cli/common.h"
#include "loader/safetensors.h"
#include "ops/ops.h"
#include "sampling/denoise.h"
#include "sampling/flux_pipeline.h"
#include "sampling/noise.h"
#include "sampling/pipeline_folder.h"
#include "sampling/sampling_config.h"
#include "sampling/scheduler.h"

namespace fastdit::cli {

namespace {

namespace fs = std::filesystem;
using sampling::SamplingConfig;

struct GenerateArgs {
  std::string model, config, preset, prompt_embeds, negative_embeds, pooled_embeds, noise, output, compare;
  bool random_weights = false;
  bool cuda_graph = false;
  bool strict = false;
  uint64_t weights_seed = 0;
  int64_t steps = 0, height = 0, width = 0, frames = 0, fps = 0;
  double guidance = 0, guidance_2 = 0, shift = 0, boundary_ratio = 0;
  double max_rel_l2 = 0;  // --compare's bound, judged only when given
  uint64_t seed = 0;
  std::string cfg_batching = "batched";
  bool cfg_parallel = false;
  RunOptions run;
  const CLI::App* cmd = nullptr;  // tells given flags from defaults
  bool given(const char* flag) const { return cmd->count(flag) > 0; }
};

SamplingConfig flag_settings(const GenerateArgs& a) {
  SamplingConfig c;
  if (a.given("--steps")) c.steps = a.steps;
  if (a.given("--guidance")) c.guidance_scale = a.guidance;
  if (a.given("--guidance-2")) c.guidance_scale_2 = a.guidance_2;
  if (a.given("--shift")) c.flow_shift = a.shift;
  if (a.given("--boundary-ratio")) c.boundary_ratio = a.boundary_ratio;
  if (a.given("--height")) c.height = a.height;
  if (a.given("--width")) c.width = a.width;
  if (a.given("--frames")) c.frames = a.frames;
  if (a.given("--fps")) c.fps = a.fps;
  if (a.given("--seed")) c.seed = a.seed;
  c.validate("command line");
  return c;
}

// A preset by path (ends in .json or has a slash) or by name: <name>.json in
// $FASTDIT_PRESETS_DIR, in presets/ next to the binary or one level up, or in the presets/
// of the source tree the binary was built from (any build folder).
fs::path find_preset(const std::string& preset) {
  if (preset.ends_with(".json") || preset.find('/') != std::string::npos) {
    FASTDIT_CHECK(fs::is_regular_file(preset), "--preset ", preset, ": no such file");
    return preset;
  }
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("FASTDIT_PRESETS_DIR")) dirs.emplace_back(env);
  const fs::path exe_dir = fs::read_symlink("/proc/self/exe").parent_path();
  dirs.push_back(exe_dir / "presets");
  dirs.push_back(exe_dir.parent_path() / "presets");
#ifdef FASTDIT_SOURCE_PRESETS_DIR
  if (fs::path source = FASTDIT_SOURCE_PRESETS_DIR; std::find(dirs.begin(), dirs.end(), source) == dirs.end())
    dirs.push_back(source);
#endif
  std::set<std::string> known;
  std::string searched;
  for (const fs::path& dir : dirs) {
    if (fs::is_regular_file(dir / (preset + ".json"))) return dir / (preset + ".json");
    searched += (searched.empty() ? "" : ", ") + dir.string();
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.path().extension() == ".json") known.insert(entry.path().stem().string());
  }
  std::string names;
  for (const auto& name : known) names += (names.empty() ? "" : ", ") + name;
  FASTDIT_FAIL("--preset ", preset, ": not found in ", searched, " (known: ", names.empty() ? "none" : names, ")");
}

// The file's only tensor, or the one called `name`.
Tensor read_named_tensor(const std::string& path, const std::string& name) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  if (file.names().size() == 1) return file.tensor(file.names().front());
  FASTDIT_CHECK(file.contains(name), path, ": expected one tensor or one named '", name, "', found ",
                file.names().size());
  return file.tensor(name);
}

struct LoadedModels {
  PreparedModel transformer;  // the activation trace (when on) covers transformer_2 too
  std::optional<LoadedTransformer> transformer_2;
};

LoadedModels load_models(const GenerateArgs& a, const sampling::PipelineFolder& folder, bool two_experts,
                         const LoadOptions& options) {
  LoadedModels m;
  if (!a.config.empty()) {
    trace::trace_config_from_env();  // a bad trace setting fails before the build
    m.transformer.loaded.model = build_transformer(a.config, options.build_options());
    randomize_parameters(*m.transformer.loaded.model, options, a.weights_seed);
    m.transformer.trace = trace::attach_from_env(*m.transformer.loaded.model);
    return m;
  }
  m.transformer = prepare_model(folder.transformer, options);
  if (two_experts) {
    m.transformer_2 = load_transformer(*folder.transformer_2, options);
    if (m.transformer.trace) m.transformer.trace->attach(*m.transformer_2->model);
  }
  return m;
}

// generate makes text-to-video and text-to-image latents only: image-conditioned models need
// inputs it does not take (the ones the pipeline builds itself are `provided`).
void check_text_conditioned(const DiTModel& model, const TensorMap& provided) {
  const ModelIO io = model.io();
  for (const auto& spec : io.tensors)
    FASTDIT_CHECK(!spec.required || spec.role != InputRole::Other || provided.count(spec.name), model.type_name(),
                  " needs input '", spec.name,
                  "' (image or other conditioning beyond latents, timestep and text), which generate does not take");
  for (const auto& spec : io.args)
    FASTDIT_CHECK(!spec.required, model.type_name(), " needs argument '", spec.name, "', which generate does not take");
  const DiTArchConfig& arch = model.arch_config();
  FASTDIT_CHECK(arch.in_channels == arch.out_channels, model.type_name(), " takes ", arch.in_channels,
                " input channels for ", arch.out_channels,
                " latent channels (image conditioning), which generate "
                "does not take");
}

Shape latent_shape(const SamplingConfig& s, int64_t batch, int64_t channels) {
  const ExampleShape latent =
      video_latent_shape(batch, *s.frames, *s.height, *s.width, 1, *s.vae_stride, "--frames/--height/--width");
  return {batch, channels, latent.frames, latent.height, latent.width};
}

// Flux's initial latents: the --noise file, packed [B, N, C] as FluxPipeline takes `latents`,
// or seeded noise [B, C / 4, H / 8, W / 8] packed.
Tensor initial_flux_noise(const GenerateArgs& a, const sampling::PackedGrid& grid, int64_t batch,
                          int64_t channels, uint64_t seed) {
  if (a.noise.empty())
    return sampling::pack_latents(
        sampling::gaussian_noise({batch, channels / 4, 2 * grid.rows, 2 * grid.cols}, seed));
  Tensor noise = read_named_tensor(a.noise, "latents");
  FASTDIT_CHECK(noise.dim() == 3 && noise.size(0) == batch && noise.size(1) == grid.tokens() &&
                    noise.size(2) == channels,
                a.noise, ": latents must be packed [", batch, ", ", grid.tokens(), " (", grid.rows, " x ", grid.cols,
                " patches of --height x --width), ", channels, "], got ", noise.str());
  return noise;
}

// The initial latents: the --noise file, or seeded noise of the settings' video size.
Tensor initial_noise(const GenerateArgs& a, const SamplingConfig& s, int64_t batch, int64_t channels) {
  if (a.noise.empty()) return sampling::gaussian_noise(latent_shape(s, batch, channels), *s.seed);
  Tensor noise = read_named_tensor(a.noise, "latents");
  FASTDIT_CHECK(noise.dim() == 5 && noise.size(0) == batch && noise.size(1) == channels, a.noise,
                ": latents must be [", batch, ", ", channels, ", F, H, W], got ", noise.str());
  if (a.given("--height") || a.given("--width") || a.given("--frames"))
    FASTDIT_CHECK(noise.shape() == latent_shape(s, batch, channels), a.noise, ": latents ", noise.str(),
                  " do not match --frames/--height/--width (latents ", shape_str(latent_shape(s, batch, channels)),
                  ")");
  return noise;
}

// Stand-in prompt embeddings of 512 tokens for a random-weights model (a benchmark needs no
// meaning): the text input, or another the model takes (Flux's pooled_projections).
Tensor random_text(const DiTModel& model, uint64_t seed, const std::string& name = "encoder_hidden_states") {
  return model.example_inputs(ExampleShape{1, 1, 2, 2, 512}, seed).at(name);
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// "m:ss", or "h:mm:ss" from an hour.
std::string clock_time(double seconds) {
  const auto total = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (total >= 3600)
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(total / 3600),
                  static_cast<long long>(total / 60 % 60), static_cast<long long>(total % 60));
  else
    std::snprintf(text, sizeof text, "%lld:%02lld", static_cast<long long>(total / 60),
                  static_cast<long long>(total % 60));
  return text;
}

// Per-step timing and progress on stderr: a bar redrawn in place on a terminal, one line
// per step otherwise. Marks the activation trace's step index before each step.
class StepReporter {
 public:
  StepReporter(Device device, std::shared_ptr<trace::ActivationTrace> trace)
      : device_(device), trace_(std::move(trace)), terminal_(isatty(STDERR_FILENO) == 1) {}

  sampling::DenoiseCallbacks callbacks() {
    return {[this](const sampling::StepEvent& e) { before(e); },
            [this](const sampling::StepEvent& e) { after(e); }};
  }
  const std::vector<double>& step_seconds() const { return seconds_; }

 private:
  void before(const sampling::StepEvent& e) {
    if (trace_) trace_->set_step(e.index);
    start_ = now_seconds();
  }
  void after(const sampling::StepEvent& e) {
    synchronize(device_);  // a step's time includes its device work
    seconds_.push_back(now_seconds() - start_);
    double total = 0;
    for (double s : seconds_) total += s;
    const double rate = static_cast<double>(seconds_.size()) / total;
    const double eta = static_cast<double>(e.count - e.index - 1) / rate;
    std::ostringstream line;
    line << std::fixed << std::setprecision(2) << "step " << e.index + 1 << "/" << e.count;
    if (terminal_) {
      const int64_t width = 30, done = (e.index + 1) * width / e.count;
      line << " [" << std::string(static_cast<size_t>(done), '#')
           << std::string(static_cast<size_t>(width - done), '.') << "] " << rate << " it/s  ETA "
           << clock_time(eta) << "  ";
      std::cerr << "\r" << line.str() << (e.index + 1 == e.count ? "\n" : "") << std::flush;
    } else {
      line << "  t=" << e.timestep << (e.second_expert ? " transformer_2" : " transformer") << "  "
           << seconds_.back() << " s  " << rate << " it/s  ETA " << clock_time(eta);
      std::cerr << line.str() << "\n";
    }
  }

  Device device_;
  std::shared_ptr<trace::ActivationTrace> trace_;
  bool terminal_;
  double start_ = 0;
  std::vector<double> seconds_;
};

std::string describe(const SamplingConfig& s, const sampling::Scheduler& scheduler, const GenerateArgs& a) {
  nlohmann::ordered_json j;
  j["model"] = a.config.empty() ? a.model : a.config + " (random weights)";
  j["scheduler"] = scheduler.class_name();
  j["steps"] = *s.steps;
  j["timesteps"] = scheduler.timesteps();
  j["guidance_scale"] = *s.guidance_scale;
  if (s.boundary_ratio) {
    j["boundary_ratio"] = *s.boundary_ratio;
    j["guidance_scale_2"] = s.guidance_scale_2.value_or(*s.guidance_scale);
  }
  if (s.flow_shift) j["flow_shift"] = *s.flow_shift;
  j["noise"] = a.noise.empty() ? "seed " + std::to_string(*s.seed) + " (fastdit's generator)" : a.noise;
  if (s.frames != 1) j["fps"] = *s.fps;
  j["preset"] = a.preset;
  return j.dump();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

SamplingConfig resolve_settings(const GenerateArgs& a, const sampling::PipelineFolder& folder,
                                const sampling::PipelineChoice& pipeline) {
  const SamplingConfig flags = flag_settings(a);
  SamplingConfig s = sampling::pipeline_defaults(pipeline.kind);
  s.override_with(folder.settings);
  if (!a.preset.empty()) s.override_with(sampling::read_sampling_preset(find_preset(a.preset)));
  s.override_with(flags);
  FASTDIT_CHECK(!s.boundary_ratio || folder.transformer_2, "boundary_ratio ", s.boundary_ratio.value_or(0),
                " switches to a transformer_2, which ", a.config.empty() ? a.model : a.config,
                " does not have (a Wan2.2 A14B pipeline folder has)");
  FASTDIT_CHECK(!s.guidance_scale_2 || s.boundary_ratio,
                "guidance_scale_2 is transformer_2's and needs boundary_ratio");
  return s;
}

std::unique_ptr<sampling::Scheduler> make_scheduler(const sampling::PipelineFolder& folder,
                                                    const sampling::PipelineChoice& pipeline, const SamplingConfig& s) {
  if (folder.scheduler_config) return sampling::load_scheduler(*folder.scheduler_config, s.flow_shift);
  return sampling::make_scheduler(sampling::default_pipeline_scheduler(pipeline, *s.scheduler),
                                  "scheduler " + *s.scheduler, s.flow_shift);
}

// What generate checks before any rank starts: the flags among themselves.
void check_flags(const GenerateArgs& a) {
  FASTDIT_CHECK(a.model.empty() != a.config.empty(), "generate: give --model or --config (not both)");
  FASTDIT_CHECK(!a.output.empty() || !a.compare.empty(), "generate: give --output, --compare or both");
  FASTDIT_CHECK(!a.given("--max-rel-l2") || !a.compare.empty(),
                "generate: --max-rel-l2 bounds --compare's rel_l2; give --compare too");
  if (a.given("--max-rel-l2")) check_rel_l2_bound(a.max_rel_l2);
  FASTDIT_CHECK(a.config.empty() || a.random_weights, "generate: --config needs --random-weights (no checkpoint)");
  FASTDIT_CHECK(a.model.empty() || !a.random_weights, "generate: --random-weights builds the model from --config "
                "and loads no checkpoint; it does not go with --model (give the folder's config.json as --config)");
  FASTDIT_CHECK(a.noise.empty() || !a.given("--seed"), "generate: --seed and --noise are exclusive (the noise file "
                "is the initial latents; the seed would make them)");
  FASTDIT_CHECK(a.random_weights || !a.prompt_embeds.empty(),
                "generate: --prompt-embeds is required (random stand-ins only with --random-weights)");
  FASTDIT_CHECK(a.cfg_batching == "batched" || a.cfg_batching == "sequential", "--cfg-batching ", a.cfg_batching,
                ": expected batched or sequential");
  FASTDIT_CHECK(!a.cfg_parallel || !a.given("--cfg-batching"), "--cfg-batching ", a.cfg_batching, " with "
                "--cfg-parallel: the cond and uncond forwards run on two rank groups, neither batched nor in turn; "
                "give one of them");
  if (a.cuda_graph) check_cuda_graph(a.run);
}

// The settings and inputs of a run, everything that is checked before the (slow) load.
struct Setup {
  sampling::PipelineFolder folder;
  sampling::PipelineChoice pipeline;
  SamplingConfig s;
  std::unique_ptr<sampling::Scheduler> scheduler;
  Tensor prompt, negative, pooled;
  Tensor reference;  // --compare's latents, float32 on the CPU
  bool flux = false, guided = false;
};

Setup setup_run(const GenerateArgs& a) {
  Setup setup;
  for (const std::string* input : {&a.config, &a.prompt_embeds, &a.negative_embeds, &a.noise, &a.compare})
    note_input_file(*input);
  if (!a.output.empty()) check_output_path(a.output, "--output");
  // Everything that can be checked without the model is, before the (slow) load.
  setup.folder = a.config.empty() ? sampling::read_pipeline_folder(a.model) : sampling::PipelineFolder{};
  const sampling::PipelineFolder& folder = setup.folder;
  setup.pipeline = sampling::choose_pipeline(folder, a.config.empty() ? folder.transformer : fs::path(a.config));
  const sampling::PipelineChoice& pipeline = setup.pipeline;
  const bool flux = setup.flux = pipeline.kind == sampling::PipelineKind::Flux;
  setup.s = resolve_settings(a, folder, pipeline);
  const SamplingConfig& s = setup.s;
  setup.scheduler = make_scheduler(folder, pipeline, s);
  Tensor& prompt = setup.prompt;
  Tensor& negative = setup.negative;
  Tensor& pooled = setup.pooled;
  prompt = a.prompt_embeds.empty() ? Tensor{} : read_named_tensor(a.prompt_embeds, "prompt_embeds");
  negative =
      a.negative_embeds.empty() ? Tensor{} : read_named_tensor(a.negative_embeds, "negative_prompt_embeds");
  pooled =
      a.pooled_embeds.empty() ? Tensor{} : read_named_tensor(a.pooled_embeds, "pooled_prompt_embeds");
  if (!a.compare.empty()) setup.reference = read_named_tensor(a.compare, "latents").to(DType::Float32);
  for (const auto& [tensor, path] : {std::pair{&prompt, &a.prompt_embeds}, std::pair{&negative, &a.negative_embeds}})
    FASTDIT_CHECK(!tensor->defined() || (tensor->dim() == 3 && tensor->numel() > 0), *path,
                  ": prompt embeddings must be a non-empty [B, L, D], got ", tensor->str());
  // FluxPipeline's guidance scale is the distilled guidance the model embeds, not CFG.
  const bool guided = setup.guided = !flux && *s.guidance_scale > 1.0;
  FASTDIT_CHECK(!a.cfg_parallel || !flux, "--cfg-parallel: FluxPipeline's guidance is distilled into the model (one "
                "forward per step, no classifier-free guidance), so there is no uncond forward to run in parallel");
  FASTDIT_CHECK(!a.cfg_parallel || guided, "--cfg-parallel needs classifier-free guidance, but guidance_scale ",
                *s.guidance_scale, " <= 1 runs one forward per step (no uncond forward to run in parallel)");
  FASTDIT_CHECK(!guided || negative.defined() || a.random_weights, "guidance_scale ", *s.guidance_scale,
                " > 1 applies classifier-free guidance and needs --negative-embeds (--guidance 1 for none)");
  FASTDIT_CHECK(!flux || negative.defined() == false, "--negative-embeds: FluxPipeline's guidance is distilled "
                "into the model (no classifier-free guidance), so generate takes no negative prompt for Flux");
  FASTDIT_CHECK(flux || pooled.defined() == false, "--pooled-embeds: only Flux takes pooled prompt embeddings");
  FASTDIT_CHECK(!flux || pooled.defined() || a.random_weights,
                "generate: Flux needs --pooled-embeds (the CLIP pooled prompt embedding, 'pooled_prompt_embeds')");
  return setup;
}

// The communication of a parallel run, from this rank's communicators: per step, the
// sequence-parallel collectives and the CFG exchange, and their share of the step time.
std::string communication_summary(const ParallelRun& parallel, double seconds, size_t steps) {
  if (!parallel.communicator() && !parallel.cfg_pair()) return {};
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << "communication per step (rank 0): ";
  double total_ms = 0;
  const auto part = [&](const distributed::Communicator* comm, const char* what) {
    if (!comm) return;
    const auto sum = comm->stats().total();
    const double ms = sum.milliseconds / static_cast<double>(steps);
    total_ms += ms;
    out << what << " " << ms << " ms (" << comm->stats().collectives.size() / steps << " collectives, "
        << sum.bytes_sent / static_cast<double>(steps) / (1 << 20) << " MiB sent), ";
  };
  part(parallel.communicator(), "sequence parallel");
  part(parallel.cfg_pair(), "CFG exchange");
  out << "total " << total_ms << " ms = " << 100 * total_ms / (1000 * seconds / static_cast<double>(steps))
      << "% of the step\n";
  return out.str();
}

int generate_rank(const GenerateArgs& a, ParallelRun& parallel) {
  const Setup setup = setup_run(a);
  const sampling::PipelineFolder& folder = setup.folder;
  const SamplingConfig& s = setup.s;
  const auto& scheduler = setup.scheduler;
  Tensor prompt = setup.prompt, negative = setup.negative, pooled = setup.pooled;
  const bool flux = setup.flux, guided = setup.guided;

  const LoadOptions options = parallel.load_options(a.run, true);
  LoadedModels models = load_models(a, folder, s.boundary_ratio.has_value(), options);
  DiTModel& model = models.transformer.model();
  if (!prompt.defined()) prompt = random_text(model, a.weights_seed + 1);
  if (!negative.defined() && guided) negative = random_text(model, a.weights_seed + 2);
  if (!pooled.defined() && flux) pooled = random_text(model, a.weights_seed + 3, "pooled_projections");

  sampling::DenoiseRequest request;
  request.expert = {&model, *s.guidance_scale};
  if (s.boundary_ratio) {
    request.expert_2 =
        sampling::Expert{models.transformer_2->model.get(), s.guidance_scale_2.value_or(*s.guidance_scale)};
    request.boundary_ratio = s.boundary_ratio;
  }
  request.steps = *s.steps;
  const int64_t channels = model.arch_config().in_channels;
  request.prompt_embeds = prompt.to(options.device, DType::Float32);
  if (flux) {
    const sampling::PackedGrid grid = sampling::flux_packed_grid(*s.height, *s.width, (*s.vae_stride)[1]);
    request.latents = initial_flux_noise(a, grid, prompt.size(0), channels, *s.seed).to(options.device, DType::Float32);
    sampling::prepare_flux_request(request, model, *scheduler, grid, pooled.to(options.device, DType::Float32),
                                   *s.guidance_scale);
  } else {
    request.latents = initial_noise(a, s, prompt.size(0), channels).to(options.device, DType::Float32);
  }
  check_text_conditioned(model, request.conditioning);
  if (guided) request.negative_prompt_embeds = negative.to(options.device, DType::Float32);
  request.cfg_batching =
      a.cfg_batching == "batched" ? sampling::CfgBatching::Batched : sampling::CfgBatching::Sequential;
  request.cuda_graph = a.cuda_graph;
  request.cfg_parallel = parallel.cfg_pair();

  if (!a.output.empty()) check_output_path(a.output, "--output");  // now that the checkpoint files are known inputs too
  // The reference must hold latents of this run's shape: known now, before the steps.
  FASTDIT_CHECK(a.compare.empty() || setup.reference.shape() == request.latents.shape(), "--compare ", a.compare,
                ": the reference latents ", shape_str(setup.reference.shape()), " do not match this run's latents ",
                shape_str(request.latents.shape()));
  // The forward's activations (CFG batched: twice the batch) and the loop's latents, the
  // scheduler's history and the guided prediction (about 6 latents in float32).
  Shape forward_latents = request.latents.shape();
  if (guided && !a.cfg_parallel && request.cfg_batching == sampling::CfgBatching::Batched) forward_latents[0] *= 2;
  require_forward_memory(model, forward_latents, options.dtype, options.device, 6 * request.latents.nbytes());
  StepReporter reporter(options.device, models.transformer.trace);
  for (auto* comm : {parallel.communicator(), parallel.cfg_pair()})
    if (comm) comm->reset_stats();
  const double start = now_seconds();
  const Tensor latents =
      sampling::denoise(*scheduler, request, reporter.callbacks()).to(Device::cpu(), DType::Float32);
  const double seconds = now_seconds() - start;
  FASTDIT_CHECK(warn_non_finite({{"latents", latents}}) || !a.strict,
                "--strict: the latents have non-finite values; nothing written");
  if (!parallel.is_main()) return 0;  // every rank has these latents; rank 0 writes and compares them
  if (!a.output.empty())
    write_safetensors(a.output, {{"latents", latents}}, {{"sampling", describe(s, *scheduler, a)}},
                      {.label = "--output"});
  const auto& steps = reporter.step_seconds();
  const int sp = parallel.sequence_parallel().world_size();
  const std::string cfg_mode = a.cfg_parallel ? "parallel" : a.cfg_batching;
  const std::string ranks =
      parallel.world_size() == 1
          ? std::string()
          : a.cfg_parallel ? detail::concat(", 2 x ", sp, " ranks (CFG-parallel", sp > 1 ? " x sequence parallel" : "", ")")
                           : detail::concat(", ", sp, " ranks (sequence parallel)");
  std::cout << (a.output.empty() ? "" : "wrote " + a.output + ": ") << "latents " << latents.str() << "\n"
            << steps.size() << " steps in " << std::fixed << std::setprecision(3) << seconds << " s: mean "
            << seconds / static_cast<double>(steps.size()) << " s/step, median " << median(steps) << " s/step ("
            << std::defaultfloat << scheduler->class_name() << ", guidance " << *s.guidance_scale
            << (flux ? " (distilled, no CFG)" : guided ? ", CFG " + cfg_mode : ", no CFG") << (a.cuda_graph ? ", CUDA graph" : "") << ", "
            << model.type_name() << " on "
            << describe_device(options.device) << " in " << dtype_name(options.dtype) << ranks << ")\n"
            << communication_summary(parallel, seconds, steps.size());
  if (a.compare.empty()) return 0;
  const Comparison c = compare_tensors(latents, setup.reference);
  std::cout << "latents " << comparison_figures(c) << " vs " << a.compare << std::endl;
  return a.given("--max-rel-l2") ? print_verdict(c, a.max_rel_l2, a.compare) : 0;
}

void run_generate(const GenerateArgs& a) {
  check_flags(a);
  // A run that starts its own ranks checks the settings and inputs once, before it does.
  if (a.run.ranks() > 1 && !distributed::launch_env_from_environment()) setup_run(a);
  exit_code() = run_parallel(a.run, [&](ParallelRun& parallel) { return generate_rank(a, parallel); });
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "denoise text-to-video (Wan) or text-to-image (Flux) latents from prompt "
                                             "embeddings");
  a->cmd = cmd;
  cmd->add_option("--model", a->model, "diffusers pipeline folder (model_index.json) or transformer folder");
  cmd->add_option("--config", a->config, "config.json or model dir to build with --random-weights instead");
  cmd->add_flag("--random-weights", a->random_weights,
                "seeded random weights (with --config); without --prompt-embeds, random stand-in embeddings");
  cmd->add_option("--weights-seed", a->weights_seed, "seed of the random weights and stand-in embeddings")
      ->capture_default_str();
  cmd->add_option("--prompt-embeds", a->prompt_embeds,
                  "safetensors with the text encoder's output [B, L, D]: its only tensor, or 'prompt_embeds'");
  cmd->add_option("--negative-embeds", a->negative_embeds,
                  "the negative prompt's, its only tensor or 'negative_prompt_embeds'; needed when guidance > 1");
  cmd->add_option("--pooled-embeds", a->pooled_embeds,
                  "Flux: safetensors with the pooled text embedding [B, P]: its only tensor or 'pooled_prompt_embeds'");
  cmd->add_option("--preset", a->preset,
                  "sampling preset: a name in presets/ (wan2.1-t2v-1.3b, flux1-dev, flux1-schnell, ...) or a .json");
  cmd->add_option("--steps", a->steps, "denoising steps");
  cmd->add_option("--guidance", a->guidance,
                  "guidance scale (Wan: > 1 is classifier-free guidance; Flux: the distilled guidance embedded)");
  cmd->add_option("--guidance-2", a->guidance_2, "transformer_2's guidance scale (Wan2.2 A14B)");
  cmd->add_option("--shift", a->shift, "flow shift (replaces the scheduler config's)");
  cmd->add_option("--boundary-ratio", a->boundary_ratio, "switch to transformer_2 below this fraction of 1000");
  cmd->add_option("--height", a->height, "video height (pixels)");
  cmd->add_option("--width", a->width, "video width (pixels)");
  cmd->add_option("--frames", a->frames, "video frames");
  cmd->add_option("--fps", a->fps, "frames per second (recorded with the latents)");
  cmd->add_option("--seed", a->seed,
                  "seed of the initial noise (fastdit's generator, not torch's: use --noise "
                  "to reproduce a PyTorch run)");
  cmd->add_option("--noise", a->noise,
                  "safetensors with the initial latents (only tensor or 'latents'): [B, C, F, H, W]; Flux: packed "
                  "[B, N, C]");
  cmd->add_option("--cfg-batching", a->cfg_batching,
                  "batched: cond and uncond in one forward; sequential: two forwards, less memory")
      ->capture_default_str();
  cmd->add_flag("--cfg-parallel", a->cfg_parallel,
                "run each step's cond and uncond forwards on two rank groups at once (2 x --sp ranks, one per GPU); "
                "needs guidance > 1");
  cmd->add_option("--output", a->output, "safetensors to write ('latents', float32); optional with --compare");
  cmd->add_option("--compare", a->compare,
                  "reference latents (safetensors: its only tensor or 'latents', this run's shape): prints "
                  "rel_l2 = ||out - ref|| / ||ref||, max |out - ref|, cosine similarity and PSNR = "
                  "20 log10(max|ref| / RMSE) dB over every latent element (the peak is the reference's largest "
                  "magnitude; inf when equal)");
  cmd->add_option("--max-rel-l2", a->max_rel_l2,
                  "with --compare: PASS (exit 0) when rel_l2 <= this, else FAIL (exit 1); without it the figures "
                  "are printed and not judged");
  add_run_options(*cmd, a->run);
  add_cuda_graph_flag(*cmd, a->cuda_graph);
  add_strict_flag(*cmd, a->strict);
  cmd->callback([a] {
    a->run.cfg_parallel = a->cfg_parallel;
    run_generate(*a);
  });
}

}  // namespace fastdit::cli
