// How a process learns its place in a group of ranks, and the launcher that `--sp N`
// uses when nothing else started the ranks: one process per rank (per GPU), so each rank
// is exactly the single-process engine plus a communicator.
#pragma once

#include <optional>
#include <string>

namespace fastdit::distributed {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // the GPU this rank drives on its host
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (torchrun and most launchers),
// else OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK (mpirun; MASTER_ADDR and MASTER_PORT
// still apply, default 127.0.0.1:29500). Under torchrun (TORCHELASTIC_RUN_ID), whose agent
// listens on MASTER_PORT itself, the rendezvous uses MASTER_PORT + 1; FASTDIT_MASTER_PORT
// overrides the port. nullopt when the process was not started as a rank. Malformed or
// inconsistent values are errors.
std::optional<LaunchEnv> launch_env_from_environment();

// A loopback port the kernel considers free right now (it may be taken before rank 0 binds
// it; the rendezvous then fails with an error naming it).
int free_local_port();

// Runs world_size copies of this program, with its arguments, as the ranks of one host
// (LOCAL_RANK = RANK, MASTER_ADDR 127.0.0.1, a free MASTER_PORT, OMP_NUM_THREADS shared
// out when unset) and waits for them. A failing rank makes the others end through the
// control channel; any still running 30 s after the first failure is killed. Returns the
// exit code of the run: 0 when every rank succeeded, else rank 0's code, else the first
// failing rank's (2 for a rank killed by a signal).
int launch_local_ranks(int world_size);

}  // namespace fastdit::distributed
