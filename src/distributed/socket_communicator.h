// CPU processes exchanging tensors through the control channel (relayed by rank 0): slow,
// but it runs the whole multi-process path (launcher, rendezvous, failure notices) on
// machines without GPUs.
#pragma once

#include <memory>

#include "distributed/channel.h"
#include "distributed/host_communicator.h"

namespace fastdit::distributed {

class SocketCommunicator final : public HostCommunicator {
 public:
  // label: the rank failures are reported as (a split group's ranks keep their world rank).
  explicit SocketCommunicator(std::unique_ptr<Channel> channel, int label = -1)
      : channel_(std::move(channel)), label_(label < 0 ? channel_->rank() : label) {}
  int world_size() const override { return channel_->world_size(); }
  int rank() const override { return channel_->rank(); }
  void abort(const std::string& reason) noexcept override;
  void linger(double seconds) noexcept override { channel_->linger(seconds); }
  // The group's leader (its lowest rank) listens on a free port at its local address; the
  // group's own channel carries its collectives.
  std::unique_ptr<Communicator> split(int color) override;

 protected:
  void exchange(ByteView mine, const std::function<void(std::span<const ByteView> all)>& read) override;

 private:
  std::unique_ptr<Channel> channel_;
  int label_;
};

}  // namespace fastdit::distributed
