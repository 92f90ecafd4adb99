#include "distributed/host_communicator.h"

#include <chrono>
#include <cstring>
#include <vector>

namespace fastdit::distributed {

namespace {
const std::byte* bytes_of(const Tensor& t) { return static_cast<const std::byte*>(t.data_ptr()); }
std::byte* bytes_of(Tensor& t) { return static_cast<std::byte*>(t.data_ptr()); }
}  // namespace

void HostCommunicator::exchange_tensors(std::span<const Tensor> sends,
                                        const std::function<void(std::span<const ByteView> all)>& read) {
  const auto start = std::chrono::steady_clock::now();
  size_t total = 0;
  for (const Tensor& t : sends) total += t.nbytes();
  std::vector<std::byte> packed(total);
  size_t offset = 0;
  for (const Tensor& t : sends) {
    std::memcpy(packed.data() + offset, bytes_of(t), t.nbytes());
    offset += t.nbytes();
  }
  exchange(packed, [&](std::span<const ByteView> all) {
    for (size_t j = 0; j < all.size(); ++j)
      FASTDIT_CHECK(all[j].size() == total, "collective: rank ", j, " sent ", all[j].size(), " bytes but rank ",
                    rank(), " sent ", total, "; the ranks run different programs or shapes");
    read(all);
  });
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  stats_.collectives.push_back({ms, static_cast<double>(total)});
}

void HostCommunicator::all_to_all(std::span<const Tensor> sends, std::span<Tensor> recvs) {
  check_collective("all_to_all", sends, recvs, world_size(), device(), false);
  exchange_tensors(sends, [&](std::span<const ByteView> all) {
    size_t offset = 0;
    for (size_t i = 0; i < sends.size(); ++i) {
      const size_t chunk = sends[i].nbytes() / static_cast<size_t>(world_size());
      for (size_t j = 0; j < all.size(); ++j)
        std::memcpy(bytes_of(recvs[i]) + j * chunk, all[j].data() + offset + static_cast<size_t>(rank()) * chunk,
                    chunk);
      offset += sends[i].nbytes();
    }
  });
}

void HostCommunicator::all_gather(std::span<const Tensor> sends, std::span<Tensor> recvs) {
  check_collective("all_gather", sends, recvs, world_size(), device(), true);
  exchange_tensors(sends, [&](std::span<const ByteView> all) {
    size_t offset = 0;
    for (size_t i = 0; i < sends.size(); ++i) {
      const size_t size = sends[i].nbytes();
      for (size_t j = 0; j < all.size(); ++j) std::memcpy(bytes_of(recvs[i]) + j * size, all[j].data() + offset, size);
      offset += size;
    }
  });
}

}  // namespace fastdit::distributed
