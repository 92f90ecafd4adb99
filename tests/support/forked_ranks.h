// Ranks of a process group as forked processes of a test: rank 0 is the test itself, the
// others run a body in a child and report through their exit code whether it held.
// Children are forked before the parent touches a GPU (CUDA does not survive a fork).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "distributed/launch.h"

namespace fastdit::testing {

class ForkedRanks {
 public:
  using Join = std::function<std::unique_ptr<distributed::Communicator>(const distributed::LaunchEnv&)>;
  ForkedRanks(int world_size, Join join) : world_size_(world_size), join_(std::move(join)) {}

  distributed::LaunchEnv env(int rank) const {
    distributed::LaunchEnv e;
    e.rank = rank;
    e.world_size = world_size_;
    e.local_rank = rank;
    e.master_port = port_;
    return e;
  }
  // Runs body(communicator) for `rank` in a child; exit code 0 when it returned true.
  void start(int rank, const std::function<bool(distributed::Communicator&)>& body) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      ADD_FAILURE() << "fork for rank " << rank << ": " << std::strerror(errno);
      return;
    }
    if (pid > 0) {
      children_.push_back(pid);
      return;
    }
    bool held = false;
    try {
      held = body(*join_(env(rank)));
    } catch (...) {
    }
    ::_exit(held ? 0 : 1);
  }
  std::unique_ptr<distributed::Communicator> join_as_rank_zero() const { return join_(env(0)); }
  // The children's exit codes, in the order they were started (-1: killed by a signal).
  std::vector<int> exit_codes() {
    std::vector<int> codes;
    for (pid_t pid : children_) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    children_.clear();
    return codes;
  }

 private:
  int world_size_;
  Join join_;
  int port_ = distributed::free_local_port();
  std::vector<pid_t> children_;
};

// One all_gather of the ranks' numbers on the communicator's device; whether every rank's
// arrived in its place.
inline bool gather_ranks(distributed::Communicator& comm) {
  const Tensor mine = Tensor::from_vector<float>({static_cast<float>(comm.rank())}, {1}).to(comm.device());
  Tensor all = Tensor::empty({comm.world_size(), 1}, DType::Float32, comm.device());
  comm.all_gather(std::span<const Tensor>(&mine, 1), std::span<Tensor>(&all, 1));
  const auto values = all.to_float_vector();
  for (int r = 0; r < comm.world_size(); ++r)
    if (values[r] != static_cast<float>(r)) return false;
  return true;
}

// CFG-parallel's layout of a world of 2 x N ranks (N = 1 for fewer than 4): the halves
// [0, N) and [N, 2N) and the pairs {r, r + N}. Whether both kinds of group put their ranks
// in their places, and the world still does after them.
inline bool split_and_gather(distributed::Communicator& comm) {
  const int half = std::max(comm.world_size() / 2, 1);
  const auto group = comm.split(comm.rank() / half);
  const auto pair = comm.split(comm.rank() % half);
  return group->world_size() == std::min(half, comm.world_size()) && group->rank() == comm.rank() % half &&
         pair->rank() == comm.rank() / half && gather_ranks(*group) && gather_ranks(*pair) && gather_ranks(comm);
}

// The same split, then a gather in the rank's pair: the PeerFailure it ends with, or "no failure".
inline std::string split_then_fail_of(distributed::Communicator& comm) {
  const int half = std::max(comm.world_size() / 2, 1);
  const auto group = comm.split(comm.rank() / half);
  const auto pair = comm.split(comm.rank() % half);
  try {
    gather_ranks(*pair);
    gather_ranks(*group);
  } catch (const distributed::PeerFailure& e) {
    return e.what();
  }
  return "no failure";
}

// The message of the PeerFailure body() throws, or "no failure".
inline std::string peer_failure_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const distributed::PeerFailure& e) {
    return e.what();
  }
  return "no failure";
}

}  // namespace fastdit::testing
