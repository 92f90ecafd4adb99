#include "distributed/socket_communicator.h"

namespace fastdit::distributed {

void SocketCommunicator::abort(const std::string& reason) noexcept {
  channel_->send_failure(detail::concat("rank ", rank(), " failed: ", reason));
}

void SocketCommunicator::exchange(ByteView mine, const std::function<void(std::span<const ByteView> all)>& read) {
  const auto all = channel_->all_gather(std::string(reinterpret_cast<const char*>(mine.data()), mine.size()));
  std::vector<ByteView> views;
  for (const auto& bytes : all) views.emplace_back(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  read(views);
}

}  // namespace fastdit::distributed
