// fastdit bench: times full forwards of a model on synthetic inputs of a video size.
// Two forms share one timing loop (perf::run_forward_bench):
//   bench <model dir> | --config <model config.json> --random-weights   ad-hoc: flags give
//       the shape; prints median ms, TFLOP/s and peak memory and writes a JSON record
//   bench --config bench/configs/<id>.json   a benchmark definition fixes everything and
//       the record written is the normalized one `fastdit perf` gates and stores
// --config tells them apart by content: a definition has "benchmark_id", a model config
// "_class_name".
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/files.h"
#include "perf/environment.h"
#include "perf/record.h"

namespace fastdit::cli {

namespace {

struct BenchArgs {
  std::string model;
  std::string config;
  bool random_weights = false;
  perf::VideoShape video;
  std::vector<int64_t> vae_stride{4, 8, 8};
  int warmup = 2, iters = 5;
  uint64_t seed = 0;
  bool components = false;
  bool cuda_graph = false;
  std::string json = "bench_record.json";
  RunOptions run{"cuda", "bfloat16"};
  std::vector<CLI::Option*> workload_flags;  // what a benchmark definition fixes itself
};

bool names_benchmark_definition(const std::string& config) {
  if (config.empty() || std::filesystem::is_directory(config)) return false;
  const std::string text = read_regular_file(config);
  check_json_depth(text, 256, config);
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  FASTDIT_CHECK(!json.is_discarded() && json.is_object(), config, ": not a JSON object");
  FASTDIT_CHECK(perf::is_benchmark_definition(json) || json.contains("_class_name"), config,
                ": neither a benchmark definition (no \"benchmark_id\") nor a model config (no \"_class_name\")");
  return perf::is_benchmark_definition(json);
}

void print_summary(const perf::ForwardBenchResult& r, const std::string& dtype, int64_t batch, int iters,
                   bool cuda_graph = false) {
  const double median_ms = r.median_ms();
  const double tflops = r.flops.total() / (median_ms * 1e-3) / 1e12;
  std::cout << std::fixed << std::setprecision(2) << r.model_type << " on " << r.device_name << " (" << dtype
            << "), latent " << r.latent.frames << "x" << r.latent.height << "x" << r.latent.width << ", batch "
            << batch << (cuda_graph ? ", CUDA graph replays" : "") << "\n"
            << "median " << median_ms << " ms  min " << r.min_ms() << " ms  over " << iters << " iters\n"
            << "throughput " << tflops << " TFLOP/s (" << r.flops.total() / 1e12 << " TFLOP per forward)\n"
            << "peak memory " << static_cast<double>(r.peak_memory_bytes) / (1 << 20) << " MiB\n";
  if (r.components)
    std::cout << "components attention " << r.components->attention_s * 1e3 << " ms  gemm "
              << r.components->gemm_s * 1e3 << " ms  other " << r.components->other_s * 1e3 << " ms\n";
}

void write_json(const std::string& path, const nlohmann::ordered_json& record) {
  write_file_atomically(path, record.dump(2) + "\n", {.label = "--json", .create_parents = true});
}

// Sequence parallelism: what this rank spent in the collectives of the timed forwards (its
// waits for slower ranks included), per forward and against the median forward time.
nlohmann::ordered_json communication(const distributed::Communicator& comm, const perf::ForwardBenchSpec& spec,
                                     double median_ms) {
  const size_t untimed = std::max(spec.warmups, 1) * spec.steps, timed = spec.iterations * spec.steps;
  const auto& collectives = comm.stats().collectives;
  const size_t per_forward = collectives.size() / (untimed + timed + (spec.components ? spec.steps : 0));
  const auto sum = comm.stats().total(untimed * per_forward, (untimed + timed) * per_forward);
  const double ms = sum.milliseconds / timed, bytes = sum.bytes_sent / timed;
  std::cout << std::fixed << std::setprecision(2) << "sequence parallel over " << comm.world_size()
            << " ranks: communication " << ms << " ms per forward (" << 100 * ms / median_ms << "% of the median), "
            << per_forward << " collectives, " << bytes / (1 << 20) << " MiB sent per rank\n";
  return {{"world_size", comm.world_size()},
          {"collectives_per_forward", per_forward},
          {"comm_ms_per_forward", ms},
          {"comm_share", ms / median_ms},
          {"bytes_sent_per_forward", bytes}};
}

// The ad-hoc form: the record keeps the fields it always had.
int run_model_bench(const BenchArgs& a, ParallelRun& parallel) {
  FASTDIT_CHECK(a.model.empty() != a.config.empty(), "bench: give a model directory or --config (not both)");
  FASTDIT_CHECK(a.config.empty() || a.random_weights, "bench: --config needs --random-weights (no checkpoint)");
  FASTDIT_CHECK(a.vae_stride.size() == 3, "bench: --vae-stride has 3 entries");
  perf::ForwardBenchSpec spec;
  spec.model = a.model.empty() ? a.config : a.model;
  spec.random_weights = !a.config.empty();
  spec.load = parallel.load_options(a.run, true);
  spec.video = a.video;
  std::copy(a.vae_stride.begin(), a.vae_stride.end(), spec.video.vae_stride.begin());
  spec.warmups = a.warmup;
  spec.iterations = a.iters;
  spec.seed = a.seed;
  spec.components = a.components;
  spec.cuda_graph = a.cuda_graph;
  if (parallel.communicator()) parallel.communicator()->reset_stats();
  const perf::ForwardBenchResult r = perf::run_forward_bench(spec);
  if (!parallel.is_main()) return 0;
  const perf::VideoShape& v = spec.video;

  nlohmann::ordered_json record;
  record["benchmark"] = "forward";
  record["model"] = r.model_type;
  record["source"] = spec.model.string();
  record["random_weights"] = spec.random_weights;
  record["device"] = spec.load.device.str();
  record["device_name"] = r.device_name;
  record["dtype"] = dtype_name(spec.load.dtype);
  record["precision"] = precision_name(spec.load.precision);
  record["shape"] = {{"batch", v.batch}, {"frames", v.frames}, {"height", v.height}, {"width", v.width},
                     {"latent", {r.latent.frames, r.latent.height, r.latent.width}}, {"text_len", v.text_len}};
  record["trace_enabled"] = r.trace_enabled;
  record["cuda_graph"] = spec.cuda_graph;
  record["warmup"] = a.warmup;
  record["iters"] = a.iters;
  record["times_ms"] = r.times_ms;
  record["median_ms"] = r.median_ms();
  record["min_ms"] = r.min_ms();
  record["flops"] = {{"linear", r.flops.linear}, {"attention", r.flops.attention}, {"total", r.flops.total()}};
  record["tflops"] = r.flops.total() / (r.median_ms() * 1e-3) / 1e12;
  record["peak_memory_bytes"] = r.peak_memory_bytes;
  record["load_ms"] = r.load_ms;
  if (r.components) {
    record["components_s"] = {{"attention", r.components->attention_s}, {"gemm", r.components->gemm_s},
                              {"other", r.components->other_s}};
    for (const auto& [op, t] : r.components->by_op)
      record["components_by_op"][op] = {{"seconds", t.seconds}, {"calls", t.calls}};
  }
  record["commit"] = perf::source_commit(".");
  record["timestamp"] = perf::utc_timestamp();
  print_summary(r, std::string(dtype_name(spec.load.dtype)) + (spec.load.precision == Precision::Fp8 ? ", fp8" : ""),
                v.batch, a.iters, spec.cuda_graph);
  if (parallel.communicator()) record["sequence_parallel"] = communication(*parallel.communicator(), spec, r.median_ms());
  write_json(a.json, record);
  std::cout << "record " << a.json << "\n";
  return 0;
}

// The definition form. A run that fails still leaves a record (success = false), which
// `perf check` reports as RUN_FAILED; the error then ends the command as usual.
void run_definition_bench(const BenchArgs& a) {
  FASTDIT_CHECK(!a.cuda_graph, "bench: --cuda-graph applies to the ad-hoc form; ", a.config,
                " is a benchmark definition, whose run.cuda_graph decides it");
  for (const CLI::Option* flag : a.workload_flags)
    FASTDIT_CHECK(flag->count() == 0, "bench: ", a.config, " is a benchmark definition, which fixes ",
                  flag->get_name(), "; edit the definition (and bump its benchmark_version) instead");
  const perf::BenchmarkDefinition def = perf::read_benchmark_definition(a.config);
  const perf::ForwardBenchSpec spec = def.forward_bench_spec(a.components);
  const perf::RunContext context = perf::describe_run(def, spec);
  std::cout << "benchmark " << def.benchmark_id << " v" << def.benchmark_version << " on " << context.device_name
            << " (" << context.gpu_type << ")\n";
  perf::ForwardBenchResult result;
  try {
    result = perf::run_forward_bench(spec);
  } catch (const std::exception& e) {
    write_json(a.json, perf::make_record(def, spec, context, nullptr, e.what()));
    std::cout << "record " << a.json << " (failed run)\n";
    throw;
  }
  const nlohmann::ordered_json record = perf::make_record(def, spec, context, &result);
  write_json(a.json, record);
  print_summary(result, def.dtype, def.video.batch, def.iterations);
  std::cout << "recipe " << context.recipe_fingerprint << "  hardware " << context.hardware_id << "  software "
            << context.software_id << "\n"
            << "record " << a.json << "\n";
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "time full forwards on synthetic inputs");
  auto& flags = a->workload_flags;
  flags.push_back(cmd->add_option("model", a->model, "model or transformer directory (its checkpoint is loaded)"));
  cmd->add_option("--config", a->config,
                  "benchmark definition (bench/configs/<id>.json), or a config.json / model dir to build "
                  "without a checkpoint (with --random-weights)");
  cmd->add_flag("--random-weights", a->random_weights, "seeded random weights (with a model --config)");
  flags.push_back(cmd->add_option("--frames", a->video.frames, "video frames (pixels)")->capture_default_str());
  flags.push_back(cmd->add_option("--height", a->video.height, "height (pixels)")->capture_default_str());
  flags.push_back(cmd->add_option("--width", a->video.width, "width (pixels)")->capture_default_str());
  flags.push_back(cmd->add_option("--text-len", a->video.text_len, "text tokens")->capture_default_str());
  flags.push_back(cmd->add_option("--batch", a->video.batch, "batch size")->capture_default_str());
  flags.push_back(cmd->add_option("--vae-stride", a->vae_stride, "VAE compression t h w")
                      ->delimiter(',')
                      ->capture_default_str());
  flags.push_back(cmd->add_option("--warmup", a->warmup, "untimed forwards (the first also counts FLOPs)")
                      ->capture_default_str());
  flags.push_back(cmd->add_option("--iters", a->iters, "timed forwards")->capture_default_str());
  flags.push_back(cmd->add_option("--seed", a->seed, "seed for weights and inputs")->capture_default_str());
  cmd->add_flag("--components", a->components,
                "also time one more forward split into attention / GEMM / other (device synchronized per kernel)");
  add_cuda_graph_flag(*cmd, a->cuda_graph);
  cmd->add_option("--json", a->json, "where to write the JSON record")->capture_default_str();
  add_run_options(*cmd, a->run);
  for (const char* name : {"--device", "--dtype", "--precision", "--fuse", "--sp"}) flags.push_back(cmd->get_option(name));
  cmd->callback([a] {
    note_input_file(a->config);
    check_output_path(a->json, "--json");  // before the (slow) run, which its record is written after
    if (names_benchmark_definition(a->config)) return run_definition_bench(*a);
    FASTDIT_CHECK(!(a->cuda_graph && a->components), "bench: --components times kernels one by one, "
                  "synchronising after each, which a CUDA graph replay cannot do; drop --components or --cuda-graph");
    if (a->cuda_graph) check_cuda_graph(a->run);
    exit_code() = run_parallel(a->run, [&](ParallelRun& parallel) { return run_model_bench(*a, parallel); });
  });
}

}  // namespace fastdit::cli
