// The LTX-2 parity cases under sequence parallelism on the CPU: 2 and 3 ranks give the
// single-process output on both heads. The video tokens are sharded (padded where the world
// does not divide them: 24 tokens over 3 ranks, 30 over 4), the audio stream is replicated
// on every rank, V2A gathers the video keys; per-token timesteps and STG shard with the tokens;
// separate and fused projections.
#include <gtest/gtest.h>

#include <iostream>

#include "support/sequence_parallel_check.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;

fs::path case_dir(const std::string& name) { return testing::source_path("tests/fixtures/ltx2/" + name); }

class Ltx2SequenceParallel : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(Ltx2SequenceParallel, FixtureEqualsOneProcess) {
  const auto& [name, world] = GetParam();
  const fs::path dir = case_dir(name);
  const double error = testing::worst_rank_error(testing::from_checkpoint(dir / "transformer"),
                                                 dir / "inputs.safetensors", world, dir / "args.json");
  std::cout << "SP=" << world << " " << name << " rel_l2 vs SP=1: " << error << "\n";
  EXPECT_LE(error, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Cases, Ltx2SequenceParallel,
                         ::testing::Combine(::testing::Values("split_batch2_masks", "interleaved", "per_token_timestep",
                                                              "ltx23_like", "stg_mixed", "isolate_modalities"),
                                            ::testing::Values(2, 3)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_SP" + std::to_string(std::get<1>(info.param));
                         });

// The fused projections (to_qkv, to_kv: what CUDA loads) under SP: the video self-attention's
// one q|k|v GEMM on the shard, V2A's k|v GEMM on the gathered video.
class Ltx2FusedSequenceParallel : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(Ltx2FusedSequenceParallel, FixtureEqualsOneProcess) {
  const auto& [name, world] = GetParam();
  const fs::path dir = case_dir(name);
  const testing::ModelFactory fused = [dir](const nn::SequenceParallel* sp) {
    LoadOptions options;
    options.sequence_parallel = sp;
    options.fuse_projections = true;
    return load_transformer(dir / "transformer", options).model;
  };
  const double error = testing::worst_rank_error(fused, dir / "inputs.safetensors", world, dir / "args.json");
  std::cout << "SP=" << world << " " << name << " fused rel_l2 vs SP=1: " << error << "\n";
  EXPECT_LE(error, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Cases, Ltx2FusedSequenceParallel,
                         ::testing::Combine(::testing::Values("split_batch2_masks", "ltx23_like", "stg_mixed"),
                                            ::testing::Values(2, 3)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_SP" + std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace fastdit
