// The NCCL communicator on 2 to 4 GPUs (skipped with fewer, or without NCCL): ranks forked
// from the test, one GPU each, run both collectives, and a rank that dies, fails or
// stalls inside a collective ends the others with an error in seconds, with the CUDA
// context still usable. scripts/sp-check.sh runs these on the multi-GPU machines. Each test
// needs a process of its own (CTest and sp-check run them so): rank 0 runs in the test
// process, and once it has initialised CUDA, ranks forked from it could not use the GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "backends/cuda/cuda_device.h"
#include "distributed/process_group.h"
#include "support/forked_ranks.h"

namespace fastdit {
namespace {

using distributed::Communicator;
using testing::ForkedRanks;
using testing::gather_ranks;
using testing::peer_failure_of;

// Counted in a child: CUDA must stay untouched in this process until the ranks are forked.
int gpu_count() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int count = 0;
    try {
      count = cuda::device_count();
    } catch (...) {  // no driver: no GPU
    }
    ::_exit(std::min(count, 100));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 0;
}

ForkedRanks gpu_ranks(int world_size) {
  return ForkedRanks(world_size, [](const distributed::LaunchEnv& env) {
    return distributed::join_process_group(env, Device::cuda(env.local_rank));
  });
}

class NcclCommunicator : public ::testing::Test {
 protected:
  void SetUp() override {
#if !FASTDIT_WITH_NCCL
    GTEST_SKIP() << "built without NCCL";
#endif
    world_ = std::min(gpu_count(), 4);
    if (world_ < 2) GTEST_SKIP() << "needs 2 GPUs, found " << world_;
    ::setenv("FASTDIT_NCCL_TIMEOUT_S", "60", 1);
  }
  int world_ = 0;
};

// all_to_all of rank-and-slot stamps (small integers, exact in bfloat16): rank r receives
// slot r of every rank j at j.
bool exchange_stamps(Communicator& comm) {
  const int p = comm.world_size(), r = comm.rank();
  std::vector<float> stamps;
  for (int j = 0; j < p; ++j)
    for (int k = 0; k < 3; ++k) stamps.push_back(static_cast<float>(16 * r + 4 * j + k));
  const Tensor send = Tensor::from_vector(stamps, {p, 3}).to(comm.device(), DType::BFloat16);
  Tensor recv = Tensor::empty({p, 3}, DType::BFloat16, comm.device());
  comm.all_to_all(std::span<const Tensor>(&send, 1), std::span<Tensor>(&recv, 1));
  const auto got = recv.to_float_vector();
  for (int j = 0; j < p; ++j)
    for (int k = 0; k < 3; ++k)
      if (got[j * 3 + k] != static_cast<float>(16 * j + 4 * r + k)) return false;
  return true;
}

TEST_F(NcclCommunicator, CollectivesPutEveryRanksDataInItsPlace) {
  ForkedRanks ranks = gpu_ranks(world_);
  for (int r = 1; r < world_; ++r)
    ranks.start(r, [](Communicator& comm) { return exchange_stamps(comm) && gather_ranks(comm); });
  auto comm = ranks.join_as_rank_zero();
  EXPECT_TRUE(exchange_stamps(*comm));
  EXPECT_TRUE(gather_ranks(*comm));
  EXPECT_EQ(comm->stats().collectives.size(), 2u);
  EXPECT_GT(comm->stats().total().milliseconds, 0.0);
  comm.reset();
  EXPECT_EQ(ranks.exit_codes(), std::vector<int>(world_ - 1, 0));
}

// Rank 0 is inside a collective (its NCCL kernel waiting for rank 1) when rank 1 goes.
void expect_rank_zero_ends(ForkedRanks& ranks, const std::string& expected) {
  auto comm = ranks.join_as_rank_zero();
  EXPECT_TRUE(gather_ranks(*comm));
  const auto start = std::chrono::steady_clock::now();
  const std::string failure = peer_failure_of([&] { gather_ranks(*comm); });
  EXPECT_NE(failure.find(expected), std::string::npos) << failure;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  // The failure aborted the communicator, not the CUDA context.
  EXPECT_EQ(Tensor::zeros({4}, DType::Float32, Device::cuda(0)).to_float_vector(), std::vector<float>(4, 0.0f));
  comm.reset();
  for (int code : ranks.exit_codes()) EXPECT_EQ(code, 0);  // the other ranks saw their error too
}

TEST_F(NcclCommunicator, ARankThatDiesEndsTheOthers) {
  ForkedRanks ranks = gpu_ranks(world_);
  ranks.start(1, [](Communicator& comm) {
    gather_ranks(comm);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    ::_exit(0);  // gone mid-run without a goodbye: a crash
    return true;
  });
  for (int r = 2; r < world_; ++r)
    ranks.start(r, [](Communicator& comm) {
      gather_ranks(comm);
      return peer_failure_of([&] { gather_ranks(comm); }).find("rank 1 exited") != std::string::npos;
    });
  expect_rank_zero_ends(ranks, "rank 1 exited without finishing");
}

TEST_F(NcclCommunicator, ARankThatFailsEndsTheOthersWithItsError) {
  ForkedRanks ranks = gpu_ranks(world_);
  ranks.start(1, [](Communicator& comm) {
    gather_ranks(comm);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    comm.abort("out of memory on purpose");
    return true;
  });
  for (int r = 2; r < world_; ++r)
    ranks.start(r, [](Communicator& comm) {
      gather_ranks(comm);
      return peer_failure_of([&] { gather_ranks(comm); }) == "rank 1 failed: out of memory on purpose";
    });
  expect_rank_zero_ends(ranks, "rank 1 failed: out of memory on purpose");
}

// CFG-parallel's groups (ncclCommSplit): the halves and pairs of the world (4 GPUs: 2 x 2;
// 2 GPUs: single-rank halves and one pair).
TEST_F(NcclCommunicator, SplitGroupsPutEveryRanksDataInItsPlace) {
  ForkedRanks ranks = gpu_ranks(world_);
  for (int r = 1; r < world_; ++r) ranks.start(r, [](Communicator& comm) { return testing::split_and_gather(comm); });
  auto comm = ranks.join_as_rank_zero();
  EXPECT_TRUE(testing::split_and_gather(*comm));
  comm.reset();
  EXPECT_EQ(ranks.exit_codes(), std::vector<int>(world_ - 1, 0));
}

// The last rank fails in its half after the split; rank 0 waits in its pair's NCCL gather.
TEST_F(NcclCommunicator, ARankOfASplitGroupThatFailsEndsEveryRank) {
  ForkedRanks ranks = gpu_ranks(world_);
  const int last = world_ - 1;
  const std::string expected = "rank " + std::to_string(last) + " failed: out of memory on purpose";
  ranks.start(last, [](Communicator& comm) {
    const int half = std::max(comm.world_size() / 2, 1);
    const auto group = comm.split(comm.rank() / half);
    const auto pair = comm.split(comm.rank() % half);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    group->abort("out of memory on purpose");
    return true;
  });
  for (int r = 1; r < last; ++r)
    ranks.start(r, [expected](Communicator& comm) { return testing::split_then_fail_of(comm) == expected; });
  auto comm = ranks.join_as_rank_zero();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(testing::split_then_fail_of(*comm), expected);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  EXPECT_EQ(Tensor::zeros({4}, DType::Float32, Device::cuda(0)).to_float_vector(), std::vector<float>(4, 0.0f));
  comm.reset();
  for (int code : ranks.exit_codes()) EXPECT_EQ(code, 0);
}

TEST_F(NcclCommunicator, AStalledRankTimesOut) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "6", 1);  // NCCL's initialisation fits in it too
  ForkedRanks ranks = gpu_ranks(world_);
  for (int r = 1; r < world_; ++r)
    ranks.start(r, [](Communicator& comm) {
      gather_ranks(comm);
      if (comm.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(15));  // alive, never arrives
      return true;
    });
  expect_rank_zero_ends(ranks, "timed out after 6 s");
}

}  // namespace
}  // namespace fastdit
