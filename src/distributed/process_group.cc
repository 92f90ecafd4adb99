#include "distributed/process_group.h"

#include "distributed/nccl_communicator.h"
#include "distributed/socket_communicator.h"

namespace fastdit::distributed {

namespace {

std::unique_ptr<Communicator> connect(const LaunchEnv& env, Device device) {
  if (device.is_cpu())
    return std::make_unique<SocketCommunicator>(
        Channel::connect(env, collective_timeout_seconds(), [] { return std::string(); }));
#if FASTDIT_WITH_NCCL
  return make_nccl_communicator(env, device);
#else
  FASTDIT_FAIL("sequence parallelism on ", device.str(), " needs NCCL, and this fastdit was built without it "
               "(CMake found no nccl.h / libnccl; set NCCL_ROOT)");
#endif
}

// Runs both collectives once, so the transport sets up its connections now rather than
// inside the first (timed) forward, as FastVideo's warmup_sequence_parallel_communication.
void warm_up(Communicator& comm) {
  const int64_t p = comm.world_size();
  const Tensor send = Tensor::zeros({p, 256}, DType::Float32, comm.device());
  Tensor exchanged = Tensor::empty({p, 256}, DType::Float32, comm.device());
  Tensor gathered = Tensor::empty({p, p, 256}, DType::Float32, comm.device());
  comm.all_to_all(std::span<const Tensor>(&send, 1), std::span<Tensor>(&exchanged, 1));
  comm.all_gather(std::span<const Tensor>(&send, 1), std::span<Tensor>(&gathered, 1));
  comm.reset_stats();
}

}  // namespace

std::unique_ptr<Communicator> join_process_group(const LaunchEnv& env, Device device) {
  auto comm = connect(env, device);
  warm_up(*comm);
  return comm;
}

}  // namespace fastdit::distributed
