// The LongCat-Video parity cases under sequence parallelism on the CPU: 2, 3 and 4 ranks
// give the single-process output, every head. The shards do not start at frame boundaries
// (per-frame modulation is then expanded to the shard's tokens), the condition tokens of
// cond_latents span part of a shard (their own attention, no cross-attention), kv_cache
// gathers every block's K/V, kv_cache_continuation attends every rank's queries to the
// cached frames. Two heads: 2 ranks take the Ulysses path, 3 and 4 the gathered keys.
#include <gtest/gtest.h>

#include <iostream>

#include "support/sequence_parallel_check.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;
using testing::from_checkpoint;
using testing::worst_rank_error;

fs::path case_dir(const std::string& name) { return testing::source_path("tests/fixtures/longcat/" + name); }

class LongcatSequenceParallel : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(LongcatSequenceParallel, FixtureEqualsOneProcess) {
  const auto& [name, world] = GetParam();
  const fs::path dir = case_dir(name);
  const double error =
      worst_rank_error(from_checkpoint(dir / "transformer"), dir / "inputs.safetensors", world, dir / "args.json");
  std::cout << "SP=" << world << " " << name << " rel_l2 vs SP=1: " << error << "\n";
  EXPECT_LE(error, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Cases, LongcatSequenceParallel,
                         ::testing::Combine(::testing::Values("varlen_batch2", "zero_pad", "cond_latents",
                                                              "per_frame_timesteps", "kv_cache",
                                                              "kv_cache_continuation"),
                                            ::testing::Values(2, 3, 4)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_SP" + std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace fastdit
