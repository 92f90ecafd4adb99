// Runs a model under sequence parallelism on the CPU (ranks as threads of one process, the
// NCCL code path's layout) and measures every rank's output against one process's.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>

#include "distributed/thread_group.h"
#include "loader/transformer_loader.h"
#include "nn/sequence_parallel.h"
#include "support/test_support.h"

namespace fastdit::testing {

// Builds the model of one rank (null: one process).
using ModelFactory = std::function<std::unique_ptr<DiTModel>(const nn::SequenceParallel*)>;

// From a checkpoint folder.
inline ModelFactory from_checkpoint(const std::filesystem::path& dir) {
  return [dir](const nn::SequenceParallel* sp) {
    LoadOptions options;
    options.sequence_parallel = sp;
    return load_transformer(dir, options).model;
  };
}

// From a config with seeded random weights (the same on every rank); fused: q|k|v (and
// cross k|v) as one projection, the layout CUDA loads use.
inline ModelFactory with_random_weights(const std::filesystem::path& config, bool fused = false) {
  return [config, fused](const nn::SequenceParallel* sp) {
    auto model = build_transformer(config, BuildOptions{fused, sp});
    randomize_parameters(*model, LoadOptions{}, 7);
    return model;
  };
}

// rel_l2 of every rank's output against the single-process output (the largest of them,
// over every head the forward returns); args_path (optional): the case's args.json.
inline double worst_rank_error(const ModelFactory& make, const std::filesystem::path& inputs_path, int world,
                               const std::filesystem::path& args_path = {}) {
  auto reference_model = make(nullptr);
  const TensorMap inputs = read_model_inputs(inputs_path, *reference_model, Device::cpu());
  const ArgMap args = !args_path.empty() && std::filesystem::exists(args_path)
                          ? read_args_file(args_path, reference_model->io())
                          : ArgMap{};
  const TensorMap reference = reference_model->forward(inputs, args);
  std::vector<double> errors(world, 0.0);
  distributed::ThreadGroup group(world, std::chrono::seconds(60));
  const auto failures = group.run([&](distributed::Communicator& comm) {
    const nn::SequenceParallel sp(comm);
    const TensorMap out = make(&sp)->forward(inputs, args);
    EXPECT_EQ(out.size(), reference.size());
    for (const auto& [name, expected] : reference) {
      const Tensor& got = out.at(name);
      EXPECT_EQ(got.shape(), expected.shape()) << name;
      errors[comm.rank()] = std::max(errors[comm.rank()], rel_l2(got, expected));
    }
  });
  for (const auto& failure : failures)
    if (failure) std::rethrow_exception(failure);
  return *std::max_element(errors.begin(), errors.end());
}

}  // namespace fastdit::testing
