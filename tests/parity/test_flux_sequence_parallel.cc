// The Flux parity cases under sequence parallelism on the CPU: 2, 3 and 4 ranks give the
// single-process output. The image tokens are sharded (16, 15 and 35 of them: padding on
// several worlds), the text tokens are replicated and join every joint attention, double and
// single stream, as replicated tokens with their own rows of the RoPE table. The fixtures
// have 2 or 3 heads (the gathered-keys path where the world does not divide them); a
// 12-head variant with random weights runs Ulysses on every world.
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

fs::path case_dir(const std::string& name) { return testing::source_path("tests/fixtures/flux/" + name); }

class FluxSequenceParallel : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(FluxSequenceParallel, FixtureEqualsOneProcess) {
  const auto& [name, world] = GetParam();
  const double error =
      worst_rank_error(from_checkpoint(case_dir(name) / "transformer"), case_dir(name) / "inputs.safetensors", world);
  std::cout << "SP=" << world << " " << name << " rel_l2 vs SP=1: " << error << "\n";
  EXPECT_LE(error, 1e-6);
}

// The case's config with 12 heads of the same width.
fs::path twelve_head_config(const std::string& name) {
  std::ifstream in(case_dir(name) / "transformer/config.json");
  auto config = nlohmann::json::parse(in);
  config["num_attention_heads"] = 12;
  const fs::path dir = testing::temp_dir("flux_12_heads");
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir / "config.json";
}

TEST_P(FluxSequenceParallel, UlyssesWithTwelveHeadsEqualsOneProcess) {
  const auto& [name, world] = GetParam();
  const double error =
      worst_rank_error(with_random_weights(twelve_head_config(name)), case_dir(name) / "inputs.safetensors", world);
  std::cout << "SP=" << world << " " << name << " (12 heads, Ulysses) rel_l2 vs SP=1: " << error << "\n";
  EXPECT_LE(error, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Cases, FluxSequenceParallel,
                         ::testing::Combine(::testing::Values("dev", "schnell_batch2", "dev_deep_odd"),
                                            ::testing::Values(2, 3, 4)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_SP" + std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace fastdit
