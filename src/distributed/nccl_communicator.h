// One process per GPU over NCCL. The unique id travels through the control channel (no
// MPI). The communicator is nonblocking: after enqueuing a collective on the backend's
// stream the rank polls until it completes, watching NCCL's asynchronous error, the
// channel (a peer that failed or died) and FASTDIT_NCCL_TIMEOUT_S, and on any of them
// aborts the communicator (ncclCommAbort ends its kernels) and throws. That wait costs
// one kernel-launch gap per collective and is what turns every failure into an error on
// every rank instead of a hang.
#pragma once

#include <memory>

#include "distributed/communicator.h"
#include "distributed/launch.h"

namespace fastdit::distributed {

// Built only with NCCL (FASTDIT_WITH_NCCL); device is this rank's GPU.
std::unique_ptr<Communicator> make_nccl_communicator(const LaunchEnv& env, Device device);

}  // namespace fastdit::distributed
