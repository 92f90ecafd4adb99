// The transport of a sequence-parallel group: two collectives over tensors, and a way to
// end the whole group when one rank fails. What the tensors mean (sequence shards, head
// groups, padding) is nn::SequenceParallel's business; a communicator only moves bytes.
//
// Implementations: ThreadGroup (N ranks as N threads of one process, the CPU tests),
// SocketCommunicator (CPU processes over the control channel) and NcclCommunicator (one
// process per GPU).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace fastdit::distributed {

// Another rank failed, died or stopped answering; the message says which and why. Every
// rank but the failing one ends with this error instead of waiting forever.
class PeerFailure : public Error {
 public:
  using Error::Error;
};

// Every collective since the last reset, in call order: its time, which includes waiting
// for slower ranks (part of what sequence parallelism costs), and the bytes this rank sent.
struct CommStats {
  struct Collective {
    double milliseconds = 0;
    double bytes_sent = 0;
  };
  std::vector<Collective> collectives;
  // The sums over collectives [first, last).
  Collective total(size_t first = 0, size_t last = SIZE_MAX) const;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int world_size() const = 0;
  virtual int rank() const = 0;
  // The device the collectives' tensors live on.
  virtual Device device() const = 0;

  // Every rank calls each collective in the same order with the same shapes. All tensors
  // are contiguous and on device(); the n pairs of one call move as one collective.
  //
  // sends[i] [P, ...] -> recvs[i] [P, ...] (same shape): recvs[i][j] = rank j's sends[i][rank()].
  virtual void all_to_all(std::span<const Tensor> sends, std::span<Tensor> recvs) = 0;
  // sends[i] [...] -> recvs[i] [P, ...]: recvs[i][j] = rank j's sends[i].
  virtual void all_gather(std::span<const Tensor> sends, std::span<Tensor> recvs) = 0;

  // Called on a rank that failed: the other ranks' current and later collectives throw
  // PeerFailure carrying `reason` instead of waiting. Never throws.
  virtual void abort(const std::string& reason) noexcept = 0;
  // Called on a rank that ends because another failed: stays reachable (up to `seconds`)
  // until rank 0 has ended, so that rank 0 names the rank that failed, not this one's exit.
  // Never throws.
  virtual void linger(double /*seconds*/) noexcept {}

  // A collective: every rank calls it, in the same order as its other collectives. The
  // ranks that pass the same color form one group, ranked in this communicator's order;
  // each rank gets its group's communicator. A group is a part of this one for failures: a
  // rank failing or dying in either ends every rank of this one (an abort on the group
  // reaches them all, and the group's waits watch this one's failures too). It must not
  // outlive this communicator. Classifier-free-guidance parallelism splits a world of
  // 2 x N ranks into two sequence-parallel groups of N and N guidance pairs.
  virtual std::unique_ptr<Communicator> split(int color) = 0;

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  CommStats stats_;
};

// Throws when this rank's tensors break the contract of all_to_all (gather = false) or
// all_gather (gather = true) for a group of world_size ranks on `device`.
void check_collective(const char* name, std::span<const Tensor> sends, std::span<const Tensor> recvs,
                      int world_size, Device device, bool gather);

// Seconds a collective (or the rendezvous) may wait for the other ranks before the group
// is aborted: FASTDIT_NCCL_TIMEOUT_S, default 300.
double collective_timeout_seconds();

}  // namespace fastdit::distributed
