// A communicator over CPU tensors whose transport needs one primitive only: every rank
// offers its bytes and reads every rank's. The collectives' layout is written once here
// for the in-process thread group and the socket transport of CPU processes.
#pragma once

#include <functional>

#include "distributed/communicator.h"

namespace fastdit::distributed {

class HostCommunicator : public Communicator {
 public:
  Device device() const override { return Device::cpu(); }
  void all_to_all(std::span<const Tensor> sends, std::span<Tensor> recvs) override;
  void all_gather(std::span<const Tensor> sends, std::span<Tensor> recvs) override;

 protected:
  using ByteView = std::span<const std::byte>;
  // Offers `mine` to every rank and calls read(all) with every rank's bytes in rank
  // order; the views are valid during the call only.
  virtual void exchange(ByteView mine, const std::function<void(std::span<const ByteView> all)>& read) = 0;

 private:
  // Packs the tensors into one buffer, exchanges it, and checks every rank sent as many bytes.
  void exchange_tensors(std::span<const Tensor> sends,
                        const std::function<void(std::span<const ByteView> all)>& read);
};

}  // namespace fastdit::distributed
