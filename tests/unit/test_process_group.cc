// The multi-process path on CPU processes: ranks forked from the test join through the
// TCP rendezvous and exchange tensors over the channel (SocketCommunicator). A rank that
// dies or fails ends the others with an error naming it.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "distributed/process_group.h"

namespace fastdit {
namespace {

using distributed::Communicator;
using distributed::LaunchEnv;

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// One all_gather of a rank-stamped vector; returns false when the result is wrong.
bool gather_ranks(Communicator& comm) {
  const Tensor mine = Tensor::from_vector<float>({static_cast<float>(comm.rank())}, {1});
  Tensor all = Tensor::empty({comm.world_size(), 1}, DType::Float32);
  comm.all_gather(std::span<const Tensor>(&mine, 1), std::span<Tensor>(&all, 1));
  for (int r = 0; r < comm.world_size(); ++r)
    if (all.data<float>()[r] != static_cast<float>(r)) return false;
  return true;
}

// Runs each rank's body in its own process (rank 0 in this one); the children's exit
// codes say whether their bodies' expectations held (0) or not.
struct Ranks {
  explicit Ranks(int world_size) : world(world_size) {}
  int world;
  int port = free_port();
  std::vector<pid_t> children;

  LaunchEnv env(int rank) const {
    LaunchEnv e;
    e.rank = rank;
    e.world_size = world;
    e.local_rank = rank;
    e.master_port = port;
    return e;
  }

  void start(int rank, const std::function<bool(Communicator&)>& body) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid > 0) {
      children.push_back(pid);
      return;
    }
    bool ok = false;
    try {
      auto comm = distributed::join_process_group(env(rank), Device::cpu());
      ok = body(*comm);
    } catch (...) {
    }
    ::_exit(ok ? 0 : 1);
  }
  std::vector<int> exit_codes() {
    std::vector<int> codes;
    for (pid_t pid : children) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    return codes;
  }
};

std::string failure_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const distributed::PeerFailure& e) {
    return e.what();
  }
  return "no failure";
}

TEST(ProcessGroup, RanksExchangeThroughTheChannel) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "20", 1);
  Ranks ranks(3);
  for (int r : {1, 2}) ranks.start(r, [](Communicator& comm) { return gather_ranks(comm) && gather_ranks(comm); });
  auto comm = distributed::join_process_group(ranks.env(0), Device::cpu());
  EXPECT_TRUE(gather_ranks(*comm));
  EXPECT_TRUE(gather_ranks(*comm));
  EXPECT_EQ(comm->stats().collectives, 2);
  comm.reset();
  EXPECT_EQ(ranks.exit_codes(), (std::vector<int>{0, 0}));
}

TEST(ProcessGroup, ARankThatDiesEndsTheOthers) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "60", 1);
  Ranks ranks(3);
  ranks.start(1, [](Communicator& comm) {
    gather_ranks(comm);
    ::_exit(0);  // gone mid-run, without a goodbye: a crash
    return true;
  });
  ranks.start(2, [](Communicator& comm) {
    gather_ranks(comm);
    return failure_of([&] { gather_ranks(comm); }) == "rank 1 exited without finishing (it crashed or was killed)";
  });
  auto comm = distributed::join_process_group(ranks.env(0), Device::cpu());
  EXPECT_TRUE(gather_ranks(*comm));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(failure_of([&] { gather_ranks(*comm); }), "rank 1 exited without finishing (it crashed or was killed)");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  comm.reset();
  EXPECT_EQ(ranks.exit_codes(), (std::vector<int>{0, 0}));
}

TEST(ProcessGroup, ARankThatFailsTellsTheOthersWhy) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "60", 1);
  Ranks ranks(3);
  ranks.start(2, [](Communicator& comm) {
    comm.abort("out of memory on purpose");
    return true;
  });
  ranks.start(1, [](Communicator& comm) {
    return failure_of([&] { gather_ranks(comm); }) == "rank 2 failed: out of memory on purpose";
  });
  auto comm = distributed::join_process_group(ranks.env(0), Device::cpu());
  EXPECT_EQ(failure_of([&] { gather_ranks(*comm); }), "rank 2 failed: out of memory on purpose");
  comm.reset();
  EXPECT_EQ(ranks.exit_codes(), (std::vector<int>{0, 0}));
}

TEST(ProcessGroup, ACollectiveThatWaitsTooLongTimesOut) {
  ::setenv("FASTDIT_NCCL_TIMEOUT_S", "1", 1);
  Ranks ranks(2);
  ranks.start(1, [](Communicator&) {
    ::sleep(2);  // alive, connected, but never reaches the collective
    return true;
  });
  auto comm = distributed::join_process_group(ranks.env(0), Device::cpu());
  EXPECT_NE(failure_of([&] { gather_ranks(*comm); }).find("timed out after 1 s waiting for rank 1"), std::string::npos);
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
  ::setenv("TORCHELASTIC_RUN_ID", "x", 1);  // torchrun's agent holds MASTER_PORT
  EXPECT_EQ(distributed::launch_env_from_environment()->master_port, 1235);
  ::setenv("FASTDIT_MASTER_PORT", "4321", 1);
  EXPECT_EQ(distributed::launch_env_from_environment()->master_port, 4321);
  ::setenv("RANK", "2", 1);  // not below WORLD_SIZE
  EXPECT_THROW(distributed::launch_env_from_environment(), Error);
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "RANK",
                           "WORLD_SIZE", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "FASTDIT_MASTER_PORT"})
    ::unsetenv(name);
  EXPECT_FALSE(distributed::launch_env_from_environment());
}

}  // namespace
}  // namespace fastdit
