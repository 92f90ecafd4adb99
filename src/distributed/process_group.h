// Joining the group of ranks a launcher started: the control channel (rendezvous and
// failure notices), then the transport for the rank's device.
#pragma once

#include <memory>

#include "distributed/communicator.h"
#include "distributed/launch.h"

namespace fastdit::distributed {

// NCCL for a CUDA device (one GPU per process), the channel itself for the CPU (tests and
// debugging of the multi-process path on machines without GPUs).
std::unique_ptr<Communicator> join_process_group(const LaunchEnv& env, Device device);

}  // namespace fastdit::distributed
