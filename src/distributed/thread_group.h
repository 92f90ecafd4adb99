// N ranks as N threads of one process sharing memory: a whole sequence-parallel group on
// the CPU, for tests. It shares the collectives' layout with the socket transport
// (HostCommunicator) and the failure semantics of every transport: a collective gives up
// after the timeout, and a rank that fails wakes every waiting rank with PeerFailure.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <vector>

#include "distributed/communicator.h"

namespace fastdit::distributed {

class ThreadGroup {
 public:
  ThreadGroup(int world_size, std::chrono::milliseconds timeout);
  ~ThreadGroup();
  int world_size() const;
  Communicator& rank(int r);

  // Runs body(communicator of rank r) on one thread per rank and waits for all of them.
  // A rank whose body throws aborts the group, as the CLI does. Returns each rank's
  // exception (null where the body returned).
  std::vector<std::exception_ptr> run(const std::function<void(Communicator&)>& body);

 private:
  struct Shared;
  class Rank;
  std::unique_ptr<Shared> shared_;
  std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace fastdit::distributed
