// The multi-process path on CPU processes: ranks forked from the test join through the
// TCP rendezvous and exchange tensors over the channel (SocketCommunicator). A rank that
// dies or fails ends the others with an error naming it.
#include <gtest/gtest.h>

#include <chrono>

#include "distributed/process_group.h"
#include "support/forked_ranks.h"

namespace fastdit {
namespace {

using distributed::Communicator;
using distributed::LaunchEnv;
using testing::ForkedRanks;
using testing::gather_ranks;
using testing::peer_failure_of;
const std::string kRank1Died = "rank 1 exited without finishing (it crashed or was killed)";

ForkedRanks cpu_ranks(int world_size) {
  return ForkedRanks(world_size,
                     [](const LaunchEnv& env) { return distributed::join_process_group(env, Device::cpu()); });
}

TEST(ProcessGroup, RanksExchangeThroughTheChannel) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "20", 1);
  ForkedRanks ranks = cpu_ranks(3);
  for (int r : {1, 2}) ranks.start(r, [](Communicator& comm) { return gather_ranks(comm) && gather_ranks(comm); });
  auto comm = ranks.join_as_rank_zero();
  EXPECT_TRUE(gather_ranks(*comm));
  EXPECT_TRUE(gather_ranks(*comm));
  EXPECT_EQ(comm->stats().collectives.size(), 2u);
  EXPECT_EQ(comm->stats().total().bytes_sent, 2 * sizeof(float));
  comm.reset();
  EXPECT_EQ(ranks.exit_codes(), (std::vector<int>{0, 0}));
}

TEST(ProcessGroup, ARankThatDiesEndsTheOthers) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "60", 1);
  ForkedRanks ranks = cpu_ranks(3);
  ranks.start(1, [](Communicator& comm) {
    gather_ranks(comm);
    ::_exit(0);  // gone mid-run, without a goodbye: a crash
    return true;
  });
  ranks.start(2, [](Communicator& comm) {
    gather_ranks(comm);
    return peer_failure_of([&] { gather_ranks(comm); }) == kRank1Died;
  });
  auto comm = ranks.join_as_rank_zero();
  EXPECT_TRUE(gather_ranks(*comm));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(peer_failure_of([&] { gather_ranks(*comm); }), kRank1Died);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  comm.reset();
  EXPECT_EQ(ranks.exit_codes(), (std::vector<int>{0, 0}));
}

TEST(ProcessGroup, ARankThatFailsTellsTheOthersWhy) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "60", 1);
  ForkedRanks ranks = cpu_ranks(3);
  ranks.start(2, [](Communicator& comm) {
    comm.abort("out of memory on purpose");
    return true;
  });
  ranks.start(1, [](Communicator& comm) {
    return peer_failure_of([&] { gather_ranks(comm); }) == "rank 2 failed: out of memory on purpose";
  });
  auto comm = ranks.join_as_rank_zero();
  EXPECT_EQ(peer_failure_of([&] { gather_ranks(*comm); }), "rank 2 failed: out of memory on purpose");
  comm.reset();
  EXPECT_EQ(ranks.exit_codes(), (std::vector<int>{0, 0}));
}

// CFG-parallel's groups: two halves and two pairs of 4 ranks, each over its own channel.
TEST(ProcessGroup, SplitGroupsExchangeOverTheirOwnChannels) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "20", 1);
  ForkedRanks ranks = cpu_ranks(4);
  for (int r : {1, 2, 3}) ranks.start(r, [](Communicator& comm) { return testing::split_and_gather(comm); });
  auto comm = ranks.join_as_rank_zero();
  EXPECT_TRUE(testing::split_and_gather(*comm));
  comm.reset();
  EXPECT_EQ(ranks.exit_codes(), (std::vector<int>{0, 0, 0}));
}

// Rank 3 fails (or dies) after the split while the others wait in their pairs, which rank
// 3 is not in for ranks 0 and 2: every rank ends with rank 3's error, named by its world rank.
TEST(ProcessGroup, ARankOfASplitGroupThatFailsOrDiesEndsEveryRank) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "60", 1);
  for (const bool dies : {false, true}) {
    const std::string expected =
        dies ? "rank 3 exited without finishing (it crashed or was killed)" : "rank 3 failed: out of memory on purpose";
    ForkedRanks ranks = cpu_ranks(4);
    ranks.start(3, [dies](Communicator& comm) {
      const auto group = comm.split(comm.rank() / 2);
      const auto pair = comm.split(comm.rank() % 2);
      if (dies) ::_exit(0);
      group->abort("out of memory on purpose");
      return true;
    });
    for (int r : {1, 2})
      ranks.start(r, [expected](Communicator& comm) { return testing::split_then_fail_of(comm) == expected; });
    auto comm = ranks.join_as_rank_zero();
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(testing::split_then_fail_of(*comm), expected);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
    comm.reset();
    EXPECT_EQ(ranks.exit_codes(), (std::vector<int>{0, 0, 0})) << (dies ? "dies" : "fails");
  }
}

TEST(ProcessGroup, ACollectiveThatWaitsTooLongTimesOut) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "1", 1);
  ForkedRanks ranks = cpu_ranks(2);
  ranks.start(1, [](Communicator&) {
    ::sleep(2);  // alive, connected, but never reaches the collective
    return true;
  });
  auto comm = ranks.join_as_rank_zero();
  EXPECT_NE(peer_failure_of([&] { gather_ranks(*comm); }).find("timed out after 1 s waiting for rank 1"),
            std::string::npos);
  comm.reset();
  ranks.exit_codes();
  ::unsetenv("FASTDIT_NCCL_TIMEOUT_S");
}

TEST(LaunchEnv, ReadsTorchrunAndMpirunVariables) {
  ::setenv("OMPI_COMM_WORLD_RANK", "2", 1);
  ::setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
  auto env = distributed::launch_env_from_environment();
  ASSERT_TRUE(env);
  EXPECT_EQ(env->rank, 2);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->master_port, 29500);
  ::setenv("RANK", "1", 1);  // torchrun's names win
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("MASTER_PORT", "1234", 1);
  env = distributed::launch_env_from_environment();
  EXPECT_EQ(env->rank, 1);
  EXPECT_EQ(env->local_rank, 1);  // LOCAL_RANK unset: the rank
  EXPECT_EQ(env->master_port, 1234);
  ::setenv("MASTER_PORT", "65535", 1);  // the top port works outside torchrun
  EXPECT_EQ(distributed::launch_env_from_environment()->master_port, 65535);
  ::setenv("MASTER_PORT", "1234", 1);
  ::setenv("TORCHELASTIC_RUN_ID", "x", 1);  // torchrun's agent holds MASTER_PORT
  EXPECT_EQ(distributed::launch_env_from_environment()->master_port, 1235);
  ::setenv("MASTER_PORT", "65535", 1);  // no port above it for the workers
  EXPECT_THROW(distributed::launch_env_from_environment(), Error);
  ::setenv("MASTER_PORT", "1234", 1);
  ::setenv("FASTDIT_MASTER_PORT", "4321", 1);
  EXPECT_EQ(distributed::launch_env_from_environment()->master_port, 4321);
  ::setenv("RANK", "2", 1);  // not below WORLD_SIZE
  EXPECT_THROW(distributed::launch_env_from_environment(), Error);
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "RANK",
                           "WORLD_SIZE", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "FASTDIT_MASTER_PORT"})
    ::unsetenv(name);
  EXPECT_FALSE(distributed::launch_env_from_environment());
}

TEST(LaunchEnv, ReadsHydraPmiVariables) {  // MPICH / Intel MPI mpirun
  ::setenv("PMI_RANK", "3", 1);
  ::setenv("PMI_SIZE", "4", 1);
  ::setenv("MPI_LOCALRANKID", "0", 1);
  auto env = distributed::launch_env_from_environment();
  ASSERT_TRUE(env);
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->local_rank, 0);
  ::unsetenv("PMI_SIZE");  // a rank without a world size is an error, not a guess
  EXPECT_THROW(distributed::launch_env_from_environment(), Error);
  for (const char* name : {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"}) ::unsetenv(name);
  EXPECT_FALSE(distributed::launch_env_from_environment());
}

}  // namespace
}  // namespace fastdit
