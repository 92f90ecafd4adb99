#include "cli/common.h"

#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <streambuf>

#include "distributed/process_group.h"
#include "loader/safetensors.h"

namespace fastdit::cli {

DType RunOptions::parsed_dtype() const { return parse_run_dtype(dtype, "--dtype"); }

std::filesystem::path transformer_dir(const std::filesystem::path& dir) {
  return std::filesystem::is_directory(dir / "transformer") ? dir / "transformer" : dir;
}

void print_columns(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                   std::optional<size_t> right_column) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) {
      const bool right = right_column == c;
      const bool pad = c + 1 < row.size() || right;
      out << (right ? std::right : std::left) << std::setw(pad ? static_cast<int>(widths[c]) : 0) << row[c]
          << (c + 1 < row.size() ? "  " : "\n");
    }
  }
}

std::string human_units(double value, const char* const* units, double step) {
  int unit = 0;
  while (value >= step && units[unit + 1] != nullptr) value /= step, ++unit;
  std::ostringstream out;
  out << std::fixed << std::setprecision(unit == 0 ? 0 : 1) << value << units[unit];
  return out.str();
}

std::string human_count(uint64_t n) {
  static const char* const units[] = {"", "K", "M", "B", "T", nullptr};
  return human_units(static_cast<double>(n), units, 1000);
}

std::optional<bool> RunOptions::parsed_fuse() const {
  if (fuse == "auto") return std::nullopt;
  FASTDIT_CHECK(fuse == "on" || fuse == "off", "--fuse ", fuse, ": expected auto, on or off");
  return fuse == "on";
}

LoadOptions RunOptions::load_options(bool progress) const {
  LoadOptions options{parsed_device(), parsed_dtype(), progress};
  if (options.device.is_cuda()) {
    try {
      synchronize(options.device);  // a device that is not there is named by the flag, before any work
    } catch (const Error& e) {
      FASTDIT_FAIL("--device ", device, ": ", e.what());
    }
  }
  options.fuse_projections = parsed_fuse();
  options.precision = parse_precision(precision, "--precision");
  check_precision(options, "--precision");
  return options;
}

void add_run_options(CLI::App& cmd, RunOptions& options) {
  cmd.add_option("--device", options.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd.add_option("--dtype", options.dtype, "float32, bfloat16 or float16")->capture_default_str();
  cmd.add_option("--precision", options.precision,
                 "bf16, or fp8: FP8 e4m3 GEMMs for the transformer blocks' attention and FFN linears (weights "
                 "quantized per output channel at load, activations per token; cuda with --dtype bfloat16)")
      ->capture_default_str();
  cmd.add_option("--fuse", options.fuse, "fused q|k|v projections: auto (on for cuda), on, off")
      ->capture_default_str();
  cmd.add_option("--sp", options.sp,
                 "sequence-parallel ranks, one process per GPU (default: as many as a launcher such as "
                 "mpirun or torchrun started, else 1)")
      ->check(CLI::Range(1, kMaxRanks));
}

void add_cuda_graph_flag(CLI::App& cmd, bool& cuda_graph) {
  cmd.add_flag("--cuda-graph", cuda_graph,
               "capture the whole forward into a CUDA graph once per input shape and replay it (cuda only; "
               "fewer launches for small shapes, the same numbers)");
}

void check_cuda_graph(const RunOptions& options) {
  FASTDIT_CHECK(options.parsed_device().is_cuda(), "--cuda-graph needs --device cuda (CUDA graphs replay GPU work), "
                "got --device ", options.device);
  FASTDIT_CHECK(!trace::trace_config_from_env().enabled,
                "--cuda-graph cannot run with the activation trace (FASTDIT_TRACE_ACTIVATIONS): the trace reads "
                "every module's output on the host during the forward, which a graph replay skips");
  const auto launched = distributed::launch_env_from_environment();
  const int ranks = options.ranks() > 0 ? options.ranks() : launched ? launched->world_size : 1;
  FASTDIT_CHECK(ranks <= 1, "--cuda-graph with ", options.cfg_parallel ? "CFG" : "sequence", " parallelism over ", ranks,
                " ranks: the collectives between them are not captured; run on one GPU");
}

void add_strict_flag(CLI::App& cmd, bool& strict) {
  cmd.add_flag("--strict", strict, "fail (exit 2) when an output has NaN or Inf values, instead of only warning");
}

bool warn_non_finite(const std::vector<std::pair<std::string, Tensor>>& outputs) {
  bool finite = true;
  for (const auto& [name, tensor] : outputs) {
    const Tensor values = tensor.to(Device::cpu(), DType::Float32);
    const float* v = values.data<float>();
    int64_t bad = 0;
    for (int64_t i = 0; i < values.numel(); ++i) bad += std::isfinite(v[i]) ? 0 : 1;
    if (bad == 0) continue;
    std::cerr << "warning: output '" << name << "' has " << bad << " non-finite values (of " << values.numel()
              << ")\n";
    finite = false;
  }
  return finite;
}

std::string comparison_figures(const Comparison& c) {
  std::ostringstream out;
  out << std::scientific << std::setprecision(3) << "rel_l2=" << c.rel_l2 << " max_abs=" << c.max_abs
      << std::defaultfloat << std::setprecision(7) << " cosine=" << c.cosine << std::fixed << std::setprecision(2)
      << " psnr=" << c.psnr_db << " dB";
  return out.str();
}

Comparison worse_comparison(const Comparison& a, const Comparison& b) {
  const auto worst = [](double x, double y, bool larger) {
    if (std::isnan(x) || std::isnan(y)) return static_cast<double>(NAN);
    return larger ? std::max(x, y) : std::min(x, y);
  };
  return {worst(a.rel_l2, b.rel_l2, true), worst(a.max_abs, b.max_abs, true), worst(a.cosine, b.cosine, false),
          worst(a.psnr_db, b.psnr_db, false)};
}

int print_verdict(const Comparison& c, double bound, const std::string& reference) {
  const bool pass = c.rel_l2 <= bound;  // NaN fails
  std::cout << (pass ? "PASS " : "FAIL ") << comparison_figures(c) << std::scientific << std::setprecision(3)
            << " bound=" << bound << std::defaultfloat << " vs " << reference << std::endl;
  return pass ? 0 : 1;
}

void check_rel_l2_bound(double bound) {
  FASTDIT_CHECK(std::isfinite(bound) && bound >= 0, "--max-rel-l2 ", bound, ": expected a finite bound >= 0");
}

PreparedModel prepare_model(const std::filesystem::path& path, const LoadOptions& options) {
  trace::trace_config_from_env();  // a bad trace setting fails before the (slow) load
  PreparedModel prepared{load_transformer(path, options), nullptr};
  prepared.trace = trace::attach_from_env(*prepared.loaded.model);
  return prepared;
}

PreparedModel prepare_random_model(const std::filesystem::path& path, const LoadOptions& options, uint64_t seed) {
  trace::trace_config_from_env();
  PreparedModel prepared;
  prepared.loaded.model = build_transformer(path, options.build_options());
  randomize_parameters(*prepared.loaded.model, options, seed);
  prepared.trace = trace::attach_from_env(*prepared.loaded.model);
  return prepared;
}

ParallelRun::ParallelRun(const distributed::LaunchEnv& env, const RunOptions& options) {
  Device device = options.parsed_device();
  if (device.is_cuda()) {
    FASTDIT_CHECK(options.device == "cuda", "--device ", options.device,
                  ": with sequence parallelism each rank drives cuda:<LOCAL_RANK>; give --device cuda");
    device = Device::cuda(env.local_rank);
  }
  world_ = distributed::join_process_group(env, device);
  device_ = device;
  if (!options.cfg_parallel) {
    parallel_ = nn::SequenceParallel(*world_);
    return;
  }
  const int half = env.world_size / 2;
  group_ = world_->split(env.rank / half);  // 0: cond, 1: uncond
  pair_ = world_->split(env.rank % half);   // {r, r + N}: cond first
  if (half > 1) parallel_ = nn::SequenceParallel(*group_);
}

void ParallelRun::linger() noexcept {
  if (world_) world_->linger(5.0);
}

void ParallelRun::abort(const std::string& reason) noexcept {
  for (auto* comm : {pair_.get(), group_.get(), world_.get()})
    if (comm) comm->abort(reason);
}

LoadOptions ParallelRun::load_options(const RunOptions& options, bool progress) const {
  LoadOptions load = options.load_options(progress && is_main());
  if (device_) load.device = *device_;
  load.sequence_parallel = &parallel_;
  return load;
}

namespace {

// Silences std::cout and std::cerr while it lives (the ranks other than 0).
class QuietOutput {
 public:
  explicit QuietOutput(bool quiet) {
    if (!quiet) return;
    out_ = std::cout.rdbuf(&discard_);
    err_ = std::cerr.rdbuf(&discard_);
  }
  ~QuietOutput() {
    if (!out_) return;
    std::cout.rdbuf(out_);
    std::cerr.rdbuf(err_);
  }
  QuietOutput(const QuietOutput&) = delete;
  QuietOutput& operator=(const QuietOutput&) = delete;

 private:
  struct Discard : std::streambuf {
    int overflow(int c) override { return traits_type::not_eof(c); }
  } discard_;
  std::streambuf *out_ = nullptr, *err_ = nullptr;
};

}  // namespace

int run_parallel(const RunOptions& options, const std::function<int(ParallelRun&)>& body) {
  FASTDIT_CHECK(options.sp >= 0, "--sp ", options.sp, ": expected a number of ranks");
  FASTDIT_CHECK(options.ranks() <= kMaxRanks, options.cfg_parallel ? "--cfg-parallel --sp " : "--sp ", options.sp,
                ": at most ", kMaxRanks, " ranks", options.cfg_parallel ? " in all (2 x --sp)" : "");
  const auto env = distributed::launch_env_from_environment();
  if (!env && options.ranks() > 1) return distributed::launch_local_ranks(options.ranks());
  if (options.cfg_parallel) {
    const int world = env ? env->world_size : 1;
    FASTDIT_CHECK(world % 2 == 0, "--cfg-parallel runs the cond and uncond forwards on two groups of equal size, "
                  "but the launcher started ", world, " rank(s) (WORLD_SIZE); start an even number");
    FASTDIT_CHECK(options.sp == 0 || 2 * options.sp == world, "--cfg-parallel --sp ", options.sp, " takes ",
                  2 * options.sp, " ranks but the launcher started ", world, " (WORLD_SIZE)");
  } else {
    FASTDIT_CHECK(!env || options.sp == 0 || options.sp == env->world_size, "--sp ", options.sp,
                  " but the launcher started ", env ? env->world_size : 1, " rank(s) (WORLD_SIZE)");
  }
  if (!env || env->world_size == 1) {
    ParallelRun single;
    return body(single);
  }
  std::unique_ptr<ParallelRun> run;
  const auto fail = [&](const std::exception& e, const std::string& where) -> Error {
    if (run) run->abort(e.what());
    return Error(detail::concat("rank ", env->rank, ": ", e.what()), where);
  };
  try {
    run = std::make_unique<ParallelRun>(*env, options);
    const QuietOutput quiet(!run->is_main());
    return body(*run);
  } catch (const distributed::PeerFailure&) {
    if (env->rank != 0) {  // rank 0 reports it
      if (run) run->linger();
      return 2;
    }
    throw;
  } catch (const Error& e) {
    throw fail(e, e.where());
  } catch (const std::exception& e) {
    throw fail(e, "");
  }
}

}  // namespace fastdit::cli
