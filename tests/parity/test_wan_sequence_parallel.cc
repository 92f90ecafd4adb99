// The Wan parity cases under sequence parallelism on the CPU: 2, 3 and 4 ranks (threads
// of one process, the NCCL code path's layout) give the single-process output. The
// fixtures have 45 tokens (2 and 4 ranks pad) and 2 heads (3 and 4 ranks take the
// gathered-keys path); a 12-head variant with random weights and fused projections runs
// Ulysses on every world, each rank rotating its shard before the exchange.
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "support/sequence_parallel_check.h"

namespace fastdit {
namespace {

namespace fs = std::filesystem;
using testing::from_checkpoint;
using testing::with_random_weights;
using testing::worst_rank_error;

fs::path case_dir(const std::string& name) { return testing::source_path("tests/fixtures/wan/" + name); }

class WanSequenceParallel : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(WanSequenceParallel, FixtureEqualsOneProcess) {
  const auto& [name, world] = GetParam();
  const double error =
      worst_rank_error(from_checkpoint(case_dir(name) / "transformer"), case_dir(name) / "inputs.safetensors", world);
  std::cout << "SP=" << world << " " << name << " rel_l2 vs SP=1: " << error << "\n";
  EXPECT_LE(error, 1e-6);
}

// A copy of the case's config with 12 heads of width 8 (96 channels): every world in
// 1..4 divides the heads, so Ulysses runs; weights are random.
fs::path twelve_head_config(const std::string& name) {
  std::ifstream in(case_dir(name) / "transformer/config.json");
  auto config = nlohmann::json::parse(in);
  config["num_attention_heads"] = 12;
  config["attention_head_dim"] = 8;
  if (!config["added_kv_proj_dim"].is_null()) config["added_kv_proj_dim"] = 96;  // the image context width
  const fs::path dir = testing::temp_dir("wan_12_heads");
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir / "config.json";
}

TEST_P(WanSequenceParallel, UlyssesWithTwelveHeadsEqualsOneProcess) {
  const auto& [name, world] = GetParam();
  const double error =
      worst_rank_error(with_random_weights(twelve_head_config(name), true), case_dir(name) / "inputs.safetensors", world);
  std::cout << "SP=" << world << " " << name << " (12 heads, Ulysses) rel_l2 vs SP=1: " << error << "\n";
  EXPECT_LE(error, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Cases, WanSequenceParallel,
                         ::testing::Combine(::testing::Values("t2v", "i2v", "ti2v_per_token", "flf2v",
                                                              "t2v_batch2_sharded"),
                                            ::testing::Values(2, 3, 4)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_SP" + std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace fastdit
