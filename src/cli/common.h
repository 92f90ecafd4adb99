// Pieces several subcommands share: device/dtype options, reading named inputs,
// comparing outputs.
#pragma once

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/files.h"
#include "distributed/communicator.h"
#include "distributed/launch.h"
#include "loader/transformer_loader.h"
#include "models/dit.h"
#include "nn/sequence_parallel.h"
#include "parity/parity_case.h"
#include "trace/activation_trace.h"

namespace fastdit::cli {

// A model dir's transformer/ when it has one, else the folder itself (a checkpoint folder
// need not hold a config).
std::filesystem::path transformer_dir(const std::filesystem::path& dir);

// Rows as columns two spaces apart, left-aligned but for `right_column`; the last column is
// not padded unless it is the right-aligned one.
void print_columns(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                   std::optional<size_t> right_column = std::nullopt);
// value scaled by `step` until below it, with units[i] after: 14288491584 -> "14.3B".
std::string human_units(double value, const char* const* units, double step);
std::string human_count(uint64_t n);

// The most sequence-parallel ranks --sp may ask for.
inline constexpr int kMaxRanks = 64;

struct RunOptions {
  std::string device = "cpu";
  std::string dtype = "float32";
  std::string fuse = "auto";  // fused projections: auto (on for CUDA), on, off
  std::string precision = "bf16";  // bf16 or fp8 (LoadOptions::precision)
  int sp = 0;  // sequence-parallel ranks; 0 = as many as a launcher started (else one)
  // generate --cfg-parallel: the cond and uncond forwards on two groups of `sp` ranks
  // each (2 x sp ranks in all; under a launcher, sp = WORLD_SIZE / 2).
  bool cfg_parallel = false;
  // The ranks a run takes: 2 x sp with cfg_parallel, else sp; 0: as many as a launcher started.
  int ranks() const { return cfg_parallel ? 2 * std::max(sp, 1) : sp; }
  Device parsed_device() const { return Device::parse(device); }
  DType parsed_dtype() const;  // float32 / bfloat16 / float16 only
  std::optional<bool> parsed_fuse() const;
  LoadOptions load_options(bool progress = false) const;
};
void add_run_options(CLI::App& cmd, RunOptions& options);

// --cuda-graph (bench, run, generate): whole forwards captured into a CUDA graph and
// replayed (models/captured_forward.h).
void add_cuda_graph_flag(CLI::App& cmd, bool& cuda_graph);
// What rules a capture out, checked before the (slow) load: a device other than CUDA, the
// activation trace, sequence or CFG parallelism (--sp, --cfg-parallel, or ranks a launcher started).
void check_cuda_graph(const RunOptions& options);

// --strict (run, generate): an output with NaN or Inf values fails the command (exit 2)
// instead of only warning.
void add_strict_flag(CLI::App& cmd, bool& strict);
// Prints `warning: output '<name>' has N non-finite values` on stderr for each such output;
// returns whether all were finite.
bool warn_non_finite(const std::vector<std::pair<std::string, Tensor>>& outputs);

// --compare (run, generate): a comparison's figures as the commands print them,
// "rel_l2=… max_abs=… cosine=… psnr=… dB" (parity/parity_case.h defines each).
std::string comparison_figures(const Comparison& c);
// The worse of two comparisons, figure by figure (larger rel_l2 and max_abs, smaller cosine
// and PSNR; NaN is worst).
Comparison worse_comparison(const Comparison& a, const Comparison& b);
// "PASS|FAIL <figures> bound=<bound> vs <reference>" on stdout, judged on rel_l2 <= bound (NaN
// fails); returns the exit code, 0 or 1.
int print_verdict(const Comparison& c, double bound, const std::string& reference);
// --max-rel-l2's value: finite and >= 0, else an error naming the flag.
void check_rel_l2_bound(double bound);

// A loaded model with the activation trace attached when the environment asks for it.
struct PreparedModel {
  LoadedTransformer loaded;
  std::shared_ptr<trace::ActivationTrace> trace;
  DiTModel& model() { return *loaded.model; }
};
PreparedModel prepare_model(const std::filesystem::path& path, const LoadOptions& options);
// The same from config.json alone (a model dir or the file), with seeded random weights.
PreparedModel prepare_random_model(const std::filesystem::path& path, const LoadOptions& options, uint64_t seed);

// This process's place in a sequence-parallel run: one rank of the group a launcher
// started (its GPU is cuda:LOCAL_RANK), or the only one. With --cfg-parallel the world of
// 2 x N ranks is split into two sequence-parallel groups of N (ranks [0, N) the cond
// forwards, [N, 2N) the uncond ones) and N guidance pairs {r, r + N}.
class ParallelRun {
 public:
  ParallelRun() = default;  // one process
  ParallelRun(const distributed::LaunchEnv& env, const RunOptions& options);
  ParallelRun(const ParallelRun&) = delete;  // models point at its layout
  ParallelRun& operator=(const ParallelRun&) = delete;
  int rank() const { return world_ ? world_->rank() : 0; }  // in the whole run
  int world_size() const { return world_ ? world_->world_size() : 1; }
  bool is_main() const { return rank() == 0; }  // the rank that prints and writes
  // options.load_options with this rank's device and the group the model shards over;
  // progress lines on the main rank only.
  LoadOptions load_options(const RunOptions& options, bool progress) const;
  const nn::SequenceParallel& sequence_parallel() const { return parallel_; }
  // The sequence-parallel group's communicator (null: no sequence parallelism).
  distributed::Communicator* communicator() const { return parallel_.communicator(); }
  // The guidance pair of a CFG-parallel run (rank 0 of it cond, rank 1 uncond), else null.
  distributed::Communicator* cfg_pair() const { return pair_.get(); }
  // A rank that failed: tells every rank of the run, through each of its communicators.
  void abort(const std::string& reason) noexcept;
  // A rank other than 0 that ends because another failed waits (a few seconds at most)
  // for rank 0 to end first, so that rank 0 reports the failing rank.
  void linger() noexcept;

 private:
  std::unique_ptr<distributed::Communicator> world_;
  std::unique_ptr<distributed::Communicator> group_;  // CFG-parallel: this rank's half
  std::unique_ptr<distributed::Communicator> pair_;   // CFG-parallel: its guidance pair
  nn::SequenceParallel parallel_;
  std::optional<Device> device_;  // this rank's device; unset: the one the options name
};

// Runs body as this process's rank and returns its exit code. With --sp N (N > 1) and no
// launcher environment it starts N copies of this program as the ranks instead and
// returns the run's exit code. Ranks other than 0 print nothing but their own errors; a
// rank that fails aborts the group, so every other rank ends with its error.
int run_parallel(const RunOptions& options, const std::function<int(ParallelRun&)>& body);

}  // namespace fastdit::cli
