#include "distributed/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <string>

namespace fastdit::distributed {

void check_collective(const char* name, std::span<const Tensor> sends, std::span<const Tensor> recvs,
                      int world_size, Device device, bool gather) {
  FASTDIT_CHECK(sends.size() == recvs.size() && !sends.empty(), name, ": ", sends.size(), " send and ",
                recvs.size(), " receive tensors");
  for (size_t i = 0; i < sends.size(); ++i) {
    const Tensor &send = sends[i], &recv = recvs[i];
    FASTDIT_CHECK(send.defined() && recv.defined() && send.is_contiguous() && recv.is_contiguous(), name,
                  ": tensor ", i, " must be defined and contiguous (", send.str(), " -> ", recv.str(), ")");
    FASTDIT_CHECK(send.device() == device && recv.device() == device && send.dtype() == recv.dtype(), name,
                  ": tensor ", i, " ", send.str(), " -> ", recv.str(), " must stay on ", device.str(),
                  " in one dtype");
    Shape expected = send.shape();
    if (gather) {
      expected.insert(expected.begin(), world_size);
    } else {
      FASTDIT_CHECK(!expected.empty() && expected[0] == world_size, name, ": tensor ", i, " ", send.str(),
                    " needs a leading dim of the world size ", world_size);
    }
    FASTDIT_CHECK(recv.shape() == expected, name, ": tensor ", i, " receives into ", recv.str(),
                  ", expected shape ", shape_str(expected));
  }
}

CommStats::Collective CommStats::total(size_t first, size_t last) const {
  Collective sum;
  for (size_t i = first; i < std::min(last, collectives.size()); ++i) {
    sum.milliseconds += collectives[i].milliseconds;
    sum.bytes_sent += collectives[i].bytes_sent;
  }
  return sum;
}

double collective_timeout_seconds() {
  const char* text = std::getenv("FASTDIT_NCCL_TIMEOUT_S");
  if (!text || !*text) return 300.0;
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  FASTDIT_CHECK(end && *end == '\0' && seconds > 0, "FASTDIT_NCCL_TIMEOUT_S=", text,
                ": expected a number of seconds > 0");
  return seconds;
}

}  // namespace fastdit::distributed
