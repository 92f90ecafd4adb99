// CFG-parallel denoising on the CPU (ranks as threads, the layout of every transport):
// Communicator::split into the two sequence-parallel halves and the guidance pairs, the
// Wan2.2 A14B loop (two experts, guidance 4 / 3) with the cond and uncond forwards on two
// rank groups equal to the single-process loop, and a failing rank ending every rank.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "distributed/thread_group.h"
#include "loader/safetensors.h"
#include "loader/transformer_loader.h"
#include "nn/sequence_parallel.h"
#include "sampling/denoise.h"
#include "sampling/pipeline_folder.h"
#include "support/forked_ranks.h"
#include "support/test_support.h"

namespace fastdit::sampling {
namespace {

namespace fs = std::filesystem;
using distributed::Communicator;
using distributed::ThreadGroup;

fs::path case_dir() { return testing::source_path("tests/fixtures/pipeline/wan22_a14b_tiny"); }

Tensor fixture_tensor(const std::string& file, const std::string& tensor) {
  return SafetensorsFile::open(case_dir() / file).tensor(tensor);
}

// One rank's copy of the A14B pipeline: both experts laid out for `sp` (null: one process).
struct Pipeline {
  std::unique_ptr<Scheduler> scheduler;
  LoadedTransformer transformer, transformer_2;
  DenoiseRequest request;
};

Pipeline open_pipeline(const nn::SequenceParallel* sp) {
  const PipelineFolder folder = read_pipeline_folder(case_dir());
  std::ifstream in(case_dir() / "sampling.json");
  const auto sampling = nlohmann::json::parse(in);
  LoadOptions options;
  options.sequence_parallel = sp;
  Pipeline p{load_scheduler(*folder.scheduler_config), load_transformer(folder.transformer, options),
             load_transformer(*folder.transformer_2, options), {}};
  p.request.expert = {p.transformer.model.get(), sampling["guidance_scale"].get<double>()};
  p.request.expert_2 = Expert{p.transformer_2.model.get(), sampling["guidance_scale_2"].get<double>()};
  p.request.boundary_ratio = folder.settings.boundary_ratio;
  p.request.steps = sampling["steps"].get<int64_t>();
  p.request.latents = fixture_tensor("noise.safetensors", "latents");
  p.request.prompt_embeds = fixture_tensor("prompt_embeds.safetensors", "prompt_embeds");
  p.request.negative_prompt_embeds = fixture_tensor("negative_prompt_embeds.safetensors", "negative_prompt_embeds");
  p.request.cfg_batching = CfgBatching::Sequential;
  return p;
}

// The final latents of every rank of a world of 2 x half ranks: CFG-parallel (cond on
// [0, half), uncond on [half, 2 half)), each half sequence-parallel when half > 1; plus
// which experts ran, per rank.
struct WorldRun {
  std::vector<Tensor> latents;
  std::vector<std::vector<bool>> experts;
};

WorldRun run_cfg_parallel(int half) {
  WorldRun out{std::vector<Tensor>(2 * half), std::vector<std::vector<bool>>(2 * half)};
  ThreadGroup world(2 * half, std::chrono::seconds(60));
  const auto failures = world.run([&](Communicator& comm) {
    const auto group = comm.split(comm.rank() / half);
    const auto pair = comm.split(comm.rank() % half);
    EXPECT_EQ(pair->rank(), comm.rank() / half);  // cond first
    const nn::SequenceParallel sp(*group);
    Pipeline p = open_pipeline(half > 1 ? &sp : nullptr);
    p.request.cfg_parallel = pair.get();
    auto& experts = out.experts[comm.rank()];
    out.latents[comm.rank()] =
        denoise(*p.scheduler, p.request, {{}, [&](const StepEvent& e) { experts.push_back(e.second_expert); }});
  });
  for (const auto& failure : failures)
    if (failure) std::rethrow_exception(failure);
  return out;
}

TEST(CommunicatorSplit, GroupsGatherTheirOwnRanksInOrder) {
  ThreadGroup world(4, std::chrono::seconds(30));
  const auto failures = world.run([](Communicator& comm) {
    const auto half = comm.split(comm.rank() / 2);
    const auto pair = comm.split(comm.rank() % 2);
    EXPECT_EQ(half->world_size(), 2);
    EXPECT_EQ(half->rank(), comm.rank() % 2);
    EXPECT_EQ(pair->world_size(), 2);
    EXPECT_EQ(pair->rank(), comm.rank() / 2);
    EXPECT_TRUE(testing::gather_ranks(*half));
    EXPECT_TRUE(testing::gather_ranks(*pair));
    EXPECT_TRUE(testing::gather_ranks(comm));  // the world still works beside its groups
    const auto alone = comm.split(comm.rank());
    EXPECT_EQ(alone->world_size(), 1);
    EXPECT_TRUE(testing::gather_ranks(*alone));
  });
  for (const auto& failure : failures) EXPECT_FALSE(failure);
}

// Rank 3 fails while rank 0 waits in the world's collective, rank 1 in its pair's with rank
// 3 and rank 2 in its pair's with rank 0: all end at once with rank 3's error.
TEST(CommunicatorSplit, AFailingRankEndsTheRanksOfEveryGroup) {
  ThreadGroup world(4, std::chrono::seconds(60));
  const auto start = std::chrono::steady_clock::now();
  const auto failures = world.run([](Communicator& comm) {
    const auto half = comm.split(comm.rank() / 2);
    const auto pair = comm.split(comm.rank() % 2);
    if (comm.rank() == 3) throw Error("injected failure of rank 3");
    if (comm.rank() == 2) testing::gather_ranks(*pair);  // with rank 0, which never comes
    if (comm.rank() < 2) testing::gather_ranks(*half);   // completes
    if (comm.rank() == 1) testing::gather_ranks(*pair);  // with rank 3
    if (comm.rank() == 0) testing::gather_ranks(comm);   // with everyone
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(failures[r]) << "rank " << r;
    const std::string message =
        testing::peer_failure_of([&] { std::rethrow_exception(failures[r]); });
    EXPECT_NE(message.find("rank 3 failed: injected failure of rank 3"), std::string::npos) << message;
  }
  ASSERT_TRUE(failures[3]);
}

// cond and uncond on one rank each: the single-process loop (sequential CFG: the same
// batch-1 forwards) bit for bit, on both ranks, with the same expert at every step.
TEST(CfgParallelDenoise, TwoRanksEqualTheSingleProcessLoopBitForBit) {
  Pipeline single = open_pipeline(nullptr);
  std::vector<bool> experts;
  const Tensor reference =
      denoise(*single.scheduler, single.request, {{}, [&](const StepEvent& e) { experts.push_back(e.second_expert); }});
  EXPECT_EQ(std::count(experts.begin(), experts.end(), true), 2);  // transformer_2 takes the last 2 of 6
  const WorldRun run = run_cfg_parallel(1);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(testing::max_abs_diff(run.latents[r], reference), 0.0) << "rank " << r;
    EXPECT_EQ(run.experts[r], experts) << "rank " << r;
  }
}

// Each half sequence-parallel over 2 ranks: every rank ends with the latents of the
// sequence-parallel loop on 2 ranks bit for bit (the same forwards on each rank), which
// equals one process within the float32 bound of the SP tests (OpenBLAS sums a shard's
// rows in another order than the whole sequence's).
TEST(CfgParallelDenoise, TwoTimesTwoRanksEqualSequenceParallelLoop) {
  std::vector<Tensor> sp_latents(2);
  ThreadGroup sp_world(2, std::chrono::seconds(60));
  const auto failures = sp_world.run([&](Communicator& comm) {
    const nn::SequenceParallel sp(comm);
    Pipeline p = open_pipeline(&sp);
    sp_latents[comm.rank()] = denoise(*p.scheduler, p.request);
  });
  for (const auto& failure : failures)
    if (failure) std::rethrow_exception(failure);
  Pipeline single = open_pipeline(nullptr);
  const Tensor reference = denoise(*single.scheduler, single.request);
  const WorldRun run = run_cfg_parallel(2);
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(testing::max_abs_diff(run.latents[r], sp_latents[0]), 0.0) << "rank " << r;
    EXPECT_LE(testing::rel_l2(run.latents[r], reference), 1e-6) << "rank " << r;
  }
}

// A rank of the uncond half that fails in the middle of the loop ends every rank with its
// error, cond half and its own half alike, without waiting for the timeout.
TEST(CfgParallelDenoise, AFailingRankEndsEveryRank) {
  ThreadGroup world(4, std::chrono::seconds(60));
  const auto start = std::chrono::steady_clock::now();
  const auto failures = world.run([&](Communicator& comm) {
    const auto group = comm.split(comm.rank() / 2);
    const auto pair = comm.split(comm.rank() % 2);
    const nn::SequenceParallel sp(*group);
    Pipeline p = open_pipeline(&sp);
    p.request.cfg_parallel = pair.get();
    denoise(*p.scheduler, p.request, {[&](const StepEvent& e) {
                                        if (comm.rank() == 2 && e.index == 3) throw Error("injected failure at step 3");
                                      },
                                      {}});
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  for (int r : {0, 1, 3}) {
    ASSERT_TRUE(failures[r]) << "rank " << r;
    const std::string message = testing::peer_failure_of([&] { std::rethrow_exception(failures[r]); });
    EXPECT_NE(message.find("rank 2 failed: injected failure at step 3"), std::string::npos) << message;
  }
}

TEST(CfgParallelDenoise, RefusesARunWithoutGuidanceOrAPairOfOtherSize) {
  Pipeline p = open_pipeline(nullptr);
  ThreadGroup pair(2, std::chrono::seconds(5));
  p.request.cfg_parallel = &pair.rank(0);
  p.request.expert.guidance_scale = 1.0;
  EXPECT_THROW(
      {
        try {
          denoise(*p.scheduler, p.request);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("CFG-parallel needs classifier-free guidance"), std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
  ThreadGroup three(3, std::chrono::seconds(5));
  p.request.expert.guidance_scale = 4.0;
  p.request.cfg_parallel = &three.rank(0);
  EXPECT_THROW(
      {
        try {
          denoise(*p.scheduler, p.request);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("group of 2 ranks"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
}

}  // namespace
}  // namespace fastdit::sampling
