#include "distributed/socket_communicator.h"

#include <sstream>

#include "distributed/launch.h"

namespace fastdit::distributed {

void SocketCommunicator::abort(const std::string& reason) noexcept {
  channel_->send_failure(detail::concat("rank ", label_, " failed: ", reason));
}

std::unique_ptr<Communicator> SocketCommunicator::split(int color) {
  const std::vector<std::string> colors = channel_->all_gather(std::to_string(color));
  const std::string mine = std::to_string(color);
  LaunchEnv group;
  group.world_size = 0;
  int leader = -1;
  std::vector<int> labels;  // the group's ranks by their world rank, in messages
  for (int r = 0; r < world_size(); ++r) {
    if (colors[r] != mine) continue;
    if (leader < 0) leader = r;
    labels.push_back(channel_->name(r));
    if (r == rank()) group.rank = group.local_rank = group.world_size;
    ++group.world_size;
  }
  const std::string offer =
      rank() == leader ? channel_->local_address() + " " + std::to_string(free_local_port()) : std::string();
  const std::vector<std::string> offers = channel_->all_gather(offer);
  std::istringstream where(offers[leader]);
  where >> group.master_addr >> group.master_port;
  FASTDIT_CHECK(!where.fail(), "rank ", rank(), ": split: rank ", leader, " offered '", offers[leader],
                "', not an address and port");
  auto channel = Channel::connect(group, channel_->timeout_seconds(), [] { return std::string(); }, labels);
  channel->set_parent(*channel_);
  return std::make_unique<SocketCommunicator>(std::move(channel), label_);
}

void SocketCommunicator::exchange(ByteView mine, const std::function<void(std::span<const ByteView> all)>& read) {
  const auto all = channel_->all_gather(std::string(reinterpret_cast<const char*>(mine.data()), mine.size()));
  std::vector<ByteView> views;
  for (const auto& bytes : all) views.emplace_back(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  read(views);
}

}  // namespace fastdit::distributed
