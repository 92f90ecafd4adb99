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
  explicit SocketCommunicator(std::unique_ptr<Channel> channel) : channel_(std::move(channel)) {}
  int world_size() const override { return channel_->world_size(); }
  int rank() const override { return channel_->rank(); }
  void abort(const std::string& reason) noexcept override;

 protected:
  void exchange(ByteView mine, const std::function<void(std::span<const ByteView> all)>& read) override;

 private:
  std::unique_ptr<Channel> channel_;
};

}  // namespace fastdit::distributed
