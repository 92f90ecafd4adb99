// fastdit run <model> --inputs in.safetensors [--args args.json] --output out.safetensors:
// one forward; every output head is written under its official name.
// --random-weights builds the model from its config with seeded weights, --example makes
// synthetic inputs of a video size, and --compare judges the output against a reference
// (what scripts/sp-check.sh uses to prove sequence-parallel runs equal one GPU's).
// --cuda-graph captures the forward (after its eager warm-up) and times and writes the
// output of one replay of the graph.
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <optional>

#include "cli/common.h"
#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "models/captured_forward.h"
#include "parity/parity_case.h"

namespace fastdit::cli {

namespace {
struct RunArgs {
  std::string model_dir, inputs, args_file, output, compare;
  std::vector<int64_t> example;  // video frames, height, width (pixels)
  bool random_weights = false;
  bool cuda_graph = false;
  bool strict = false;
  uint64_t seed = 0;
  double max_rel_l2 = 1e-2;
  RunOptions run;
};

// --example's latent sizes through the Wan VAE's compression (4 frames, 8 x 8 pixels).
ExampleShape example_shape(const RunArgs& args) {
  FASTDIT_CHECK(args.example.size() == 3, "run: --example takes the video's frames,height,width in pixels");
  return video_latent_shape(1, args.example[0], args.example[1], args.example[2], 512, {4, 8, 8}, "--example");
}

TensorMap make_inputs(const RunArgs& args, const DiTModel& model, Device device) {
  if (!args.inputs.empty()) return read_model_inputs(args.inputs, model, device);
  TensorMap inputs = model.example_inputs(example_shape(args), args.seed + 1);
  for (auto& [name, tensor] : inputs) tensor = tensor.to(device);
  return inputs;
}

// --args, else with --example the arguments the model's example inputs go with.
ArgMap make_args(const RunArgs& args, const DiTModel& model) {
  if (!args.args_file.empty()) return read_args_file(args.args_file, model.io());
  return args.example.empty() ? ArgMap{} : model.example_args(example_shape(args));
}

// One line per output head the reference holds, then PASS/FAIL on the worst; returns the
// exit code. A head the reference file lacks is not judged (the line says so).
int compare_with(const std::string& reference_path, const TensorMap& outputs, double bound) {
  const SafetensorsFile reference = SafetensorsFile::open(reference_path);
  std::optional<Comparison> worst;
  for (const auto& [name, tensor] : outputs) {
    if (!reference.contains(name)) {
      std::cout << "head " << name << ": not in " << reference_path << ", not compared\n";
      continue;
    }
    const Comparison c = compare_tensors(tensor.to(Device::cpu()), reference.tensor(name).to(DType::Float32));
    std::cout << "head " << name << " " << comparison_figures(c) << "\n";
    worst = worst ? worse_comparison(*worst, c) : c;
  }
  FASTDIT_CHECK(worst, reference_path, ": holds none of the model's output heads");
  return print_verdict(*worst, bound, reference_path);
}

int run_model(const RunArgs& args, ParallelRun& parallel) {
  FASTDIT_CHECK(args.inputs.empty() != args.example.empty(), "run: give --inputs or --example (one of them)");
  FASTDIT_CHECK(!args.output.empty() || !args.compare.empty(), "run: give --output, --compare or both");
  for (const std::string* input : {&args.inputs, &args.args_file, &args.compare}) note_input_file(*input);
  if (!args.output.empty()) check_output_path(args.output, "--output");
  check_rel_l2_bound(args.max_rel_l2);
  const LoadOptions options = parallel.load_options(args.run, true);
  PreparedModel prepared = args.random_weights ? prepare_random_model(args.model_dir, options, args.seed)
                                               : prepare_model(args.model_dir, options);
  if (!args.example.empty()) {
    // The example's float32 latents are made first: bound them with the forward before making them.
    const ExampleShape s = example_shape(args);
    const Shape latents{s.batch, prepared.model().arch_config().in_channels, s.frames, s.height, s.width};
    require_forward_memory(prepared.model(), latents, options.dtype, options.device,
                           static_cast<size_t>(shape_numel(latents)) * sizeof(float));
  }
  const TensorMap inputs = make_inputs(args, prepared.model(), options.device);
  const ArgMap forward_args = make_args(args, prepared.model());
  if (!args.output.empty()) check_output_path(args.output, "--output");  // the checkpoint is a known input now
  if (const std::string latents = prepared.model().io().name_of(InputRole::Latents); inputs.count(latents))
    require_forward_memory(prepared.model(), inputs.at(latents).shape(), options.dtype, options.device);
  std::optional<CapturedForward> graph;
  if (args.cuda_graph) {
    graph.emplace(prepared.model());
    graph->forward(inputs, forward_args);
    synchronize(options.device);
  }
  const auto start = std::chrono::steady_clock::now();
  const TensorMap outputs =
      graph ? graph->forward(inputs, forward_args) : prepared.model().forward(inputs, forward_args);
  synchronize(options.device);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::vector<std::pair<std::string, Tensor>> named;
  for (const auto& [name, tensor] : outputs) named.emplace_back(name, tensor.to(Device::cpu()));
  std::cerr << "forward " << std::fixed << std::setprecision(1) << ms << " ms on " << parallel.world_size()
            << " rank(s)" << (graph ? " (CUDA graph replay)" : "") << "\n";
  FASTDIT_CHECK(warn_non_finite(named) || !args.strict, "--strict: an output has non-finite values; nothing written");
  if (!args.output.empty() && parallel.is_main()) {
    write_safetensors(args.output, named, {}, {.label = "--output"});
    for (const auto& [name, tensor] : named) std::cerr << "wrote " << name << " " << tensor.str() << "\n";
  }
  return args.compare.empty() ? 0 : compare_with(args.compare, outputs, args.max_rel_l2);
}
}  // namespace

void add_run_command(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand("run", "run one forward of a model on named inputs");
  cmd->add_option("model", args->model_dir, "model or transformer directory (with --random-weights: or config.json)")
      ->required();
  cmd->add_option("--inputs", args->inputs, "safetensors with the forward's inputs");
  cmd->add_option("--args", args->args_file,
                  "JSON object of the forward's non-tensor keyword arguments (a parity case's args.json)");
  cmd->add_option("--example", args->example, "synthetic inputs for a video of frames,height,width pixels")
      ->delimiter(',');
  cmd->add_flag("--random-weights", args->random_weights, "seeded random weights instead of the checkpoint");
  cmd->add_option("--seed", args->seed, "seed for random weights (inputs use seed + 1)")->capture_default_str();
  cmd->add_option("--output", args->output, "safetensors to write, every output head under its official name");
  cmd->add_option("--compare", args->compare, "reference safetensors: per head it holds rel_l2, max_abs, cosine and PSNR (20 log10(max|ref| / RMSE), "
                  "dB), then PASS/FAIL on the worst rel_l2");
  cmd->add_option("--max-rel-l2", args->max_rel_l2, "bound for --compare")->capture_default_str();
  add_run_options(*cmd, args->run);
  add_cuda_graph_flag(*cmd, args->cuda_graph);
  add_strict_flag(*cmd, args->strict);
  cmd->callback([args] {
    if (args->cuda_graph) check_cuda_graph(args->run);
    exit_code() = run_parallel(args->run, [&](ParallelRun& parallel) { return run_model(*args, parallel); });
  });
}

}  // namespace fastdit::cli
