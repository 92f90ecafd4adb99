#if FASTDIT_WITH_NCCL

#include "distributed/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

#include "backends/cuda/cuda_device.h"
#include "distributed/channel.h"

namespace fastdit::distributed {

namespace {

using Clock = std::chrono::steady_clock;

std::string nccl_error(ncclResult_t result, ncclComm_t comm) {
  std::string text = ncclGetErrorString(result);
  const char* last = comm ? ncclGetLastError(comm) : nullptr;
  if (last && *last) text += std::string(" (") + last + ")";
  return text;
}

// Spin briefly (a collective that is about to finish), then sleep in short steps.
void pause(int& polls) {
  if (++polls < 2000) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const LaunchEnv& env, Device device);
  ~NcclCommunicator() override;
  int world_size() const override { return size_; }
  int rank() const override { return rank_; }
  Device device() const override { return device_; }
  void all_to_all(std::span<const Tensor> sends, std::span<Tensor> recvs) override;
  void all_gather(std::span<const Tensor> sends, std::span<Tensor> recvs) override;
  void abort(const std::string& reason) noexcept override;
  void linger(double seconds) noexcept override { channel_->linger(seconds); }
  // ncclCommSplit of this communicator; the group shares its control channel (failures).
  std::unique_ptr<Communicator> split(int color) override;

 private:
  // A group split off `parent` (its NCCL communicator is set by the split).
  struct SplitFrom {};
  NcclCommunicator(SplitFrom, const NcclCommunicator& parent)
      : channel_(parent.channel_), device_(parent.device_), timeout_seconds_(parent.timeout_seconds_) {}
  void create_events();
  // Messages name the world rank (the channel's), also in a split group.
  int label() const { return channel_->rank(); }
  // Polls until the communicator has nothing in progress (initialisation, a group's enqueue).
  void wait_for_communicator(const char* what);
  // Enqueues `issue` between two events on the backend's stream and waits for it to run.
  void run_collective(const char* name, double bytes, const std::function<ncclResult_t(cudaStream_t)>& issue);
  // One step of every wait: NCCL's asynchronous error, the peers, the deadline.
  void check_progress(const char* what, Clock::time_point deadline);
  // A failure a peer reported (or its death) aborts this rank's communicator too.
  void check_peers();
  [[noreturn]] void fail(const std::string& reason);
  void abort_communicator() noexcept;

  std::shared_ptr<Channel> channel_;
  Device device_;
  double timeout_seconds_;
  int rank_ = 0, size_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

NcclCommunicator::NcclCommunicator(const LaunchEnv& env, Device device)
    : device_(device), timeout_seconds_(collective_timeout_seconds()) {
  channel_ = Channel::connect(env, timeout_seconds_, [] {
    ncclUniqueId id;
    const ncclResult_t result = ncclGetUniqueId(&id);
    FASTDIT_CHECK(result == ncclSuccess, "ncclGetUniqueId: ", ncclGetErrorString(result));
    return std::string(reinterpret_cast<const char*>(&id), sizeof id);
  });
  // Checked once joined, so that the other ranks learn of it at once.
  if (!device.is_cuda() || device.index >= cuda::device_count()) {
    const std::string reason = detail::concat("rank ", env.rank, " drives ", device.str(), " (LOCAL_RANK ",
                                              env.local_rank, ") but this host has ", cuda::device_count(), " GPU(s)");
    channel_->send_failure(reason);
    FASTDIT_FAIL(reason);
  }
  // This process drives one GPU: make it the current device for good, so that anything
  // created without a device guard lands on it too.
  FASTDIT_CHECK(cudaSetDevice(device.index) == cudaSuccess, "rank ", env.rank, ": cudaSetDevice(", device.index,
                ") failed");
  FASTDIT_CHECK(channel_->shared_bytes().size() == sizeof(ncclUniqueId), "rank ", env.rank,
                ": the rendezvous handed out ", channel_->shared_bytes().size(), " bytes, not an NCCL unique id");
  ncclUniqueId id;
  std::memcpy(&id, channel_->shared_bytes().data(), sizeof id);
  cuda::DeviceGuard guard(device_);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t result = ncclCommInitRankConfig(&comm_, env.world_size, id, env.rank, &config);
  if (result != ncclSuccess && result != ncclInProgress)
    fail(detail::concat("rank ", env.rank, ": ncclCommInitRankConfig: ", nccl_error(result, comm_)));
  wait_for_communicator("initialisation");
  rank_ = env.rank;
  size_ = env.world_size;
  create_events();
}

void NcclCommunicator::create_events() {
  FASTDIT_CHECK(cudaEventCreate(&start_) == cudaSuccess && cudaEventCreate(&stop_) == cudaSuccess,
                "rank ", label(), ": cudaEventCreate failed");
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color) {
  if (!comm_) throw PeerFailure("the NCCL communicator was aborted after an earlier failure");
  check_peers();
  cuda::DeviceGuard guard(device_);
  std::unique_ptr<NcclCommunicator> group(new NcclCommunicator(SplitFrom{}, *this));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t result = ncclCommSplit(comm_, color, rank_, &group->comm_, &config);
  if (result != ncclSuccess && result != ncclInProgress)
    fail(detail::concat("rank ", label(), ": ncclCommSplit: ", nccl_error(result, comm_)));
  wait_for_communicator("split");
  FASTDIT_CHECK(group->comm_, "rank ", label(), ": ncclCommSplit gave no communicator for color ", color);
  group->wait_for_communicator("split");
  int rank = 0, size = 0;
  if (ncclCommUserRank(group->comm_, &rank) != ncclSuccess || ncclCommCount(group->comm_, &size) != ncclSuccess)
    group->fail(detail::concat("rank ", label(), ": the split communicator's rank and size are unreadable"));
  group->rank_ = rank;
  group->size_ = size;
  group->create_events();
  return group;
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_) {
    cuda::DeviceGuard guard(device_);
    // Finalize flushes what is in flight; a group that cannot (a peer gone) is aborted.
    ncclResult_t state = ncclCommFinalize(comm_);
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (state == ncclInProgress && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      ncclCommGetAsyncError(comm_, &state);
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }
  if (start_) cudaEventDestroy(start_);
  if (stop_) cudaEventDestroy(stop_);
}

void NcclCommunicator::abort_communicator() noexcept {
  if (!comm_) return;
  ncclCommAbort(comm_);
  comm_ = nullptr;
}

void NcclCommunicator::fail(const std::string& reason) {
  channel_->send_failure(reason);
  abort_communicator();
  throw PeerFailure(reason);
}

void NcclCommunicator::abort(const std::string& reason) noexcept {
  channel_->send_failure(detail::concat("rank ", label(), " failed: ", reason));
  abort_communicator();
}

void NcclCommunicator::check_progress(const char* what, Clock::time_point deadline) {
  ncclResult_t state = ncclSuccess;
  ncclCommGetAsyncError(comm_, &state);
  if (state != ncclSuccess && state != ncclInProgress)
    fail(detail::concat("rank ", label(), ": NCCL ", what, " failed: ", nccl_error(state, comm_)));
  check_peers();
  if (Clock::now() > deadline)
    fail(detail::concat("rank ", label(), ": NCCL ", what, " timed out after ", timeout_seconds_,
                        " s (FASTDIT_NCCL_TIMEOUT_S); a rank is stuck or gone"));
}

void NcclCommunicator::check_peers() {
  try {
    channel_->check_peers();
  } catch (const PeerFailure&) {
    abort_communicator();
    throw;
  }
}

void NcclCommunicator::wait_for_communicator(const char* what) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_seconds_));
  int polls = 0;
  for (ncclResult_t state = ncclInProgress; state == ncclInProgress; ncclCommGetAsyncError(comm_, &state)) {
    check_progress(what, deadline);
    pause(polls);
  }
  check_progress(what, deadline);
}

void NcclCommunicator::run_collective(const char* name, double bytes,
                                      const std::function<ncclResult_t(cudaStream_t)>& issue) {
  if (!comm_) throw PeerFailure("the NCCL communicator was aborted after an earlier failure");
  check_peers();
  cuda::DeviceGuard guard(device_);
  const cudaStream_t stream = cuda::current_stream(device_.index);
  FASTDIT_CHECK(cudaEventRecord(start_, stream) == cudaSuccess, name, ": cudaEventRecord failed");
  const ncclResult_t result = issue(stream);
  if (result != ncclSuccess && result != ncclInProgress)
    fail(detail::concat("rank ", label(), ": NCCL ", name, " failed: ", nccl_error(result, comm_)));
  wait_for_communicator(name);
  FASTDIT_CHECK(cudaEventRecord(stop_, stream) == cudaSuccess, name, ": cudaEventRecord failed");
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_seconds_));
  int polls = 0;
  for (cudaError_t status = cudaEventQuery(stop_); status != cudaSuccess; status = cudaEventQuery(stop_)) {
    if (status != cudaErrorNotReady)
      fail(detail::concat("rank ", label(), ": CUDA error while waiting for ", name, ": ", cudaGetErrorString(status)));
    check_progress(name, deadline);
    pause(polls);
  }
  float milliseconds = 0;
  cudaEventElapsedTime(&milliseconds, start_, stop_);
  stats_.collectives.push_back({milliseconds, bytes});
}

void NcclCommunicator::all_to_all(std::span<const Tensor> sends, std::span<Tensor> recvs) {
  check_collective("all_to_all", sends, recvs, world_size(), device_, false);
  double bytes = 0;
  for (const Tensor& t : sends) bytes += static_cast<double>(t.nbytes()) * (world_size() - 1) / world_size();
  run_collective("all_to_all", bytes, [&](cudaStream_t stream) {
    ncclResult_t result = ncclGroupStart();
    for (size_t i = 0; i < sends.size() && result == ncclSuccess; ++i) {
      const size_t chunk = sends[i].nbytes() / static_cast<size_t>(world_size());
      const auto* send = static_cast<const char*>(sends[i].data_ptr());
      auto* recv = static_cast<char*>(recvs[i].data_ptr());
      for (int peer = 0; peer < world_size() && result == ncclSuccess; ++peer) {
        result = ncclSend(send + peer * chunk, chunk, ncclUint8, peer, comm_, stream);
        if (result == ncclSuccess) result = ncclRecv(recv + peer * chunk, chunk, ncclUint8, peer, comm_, stream);
      }
    }
    const ncclResult_t end = ncclGroupEnd();
    return result == ncclSuccess ? end : result;
  });
}

void NcclCommunicator::all_gather(std::span<const Tensor> sends, std::span<Tensor> recvs) {
  check_collective("all_gather", sends, recvs, world_size(), device_, true);
  double bytes = 0;
  for (const Tensor& t : sends) bytes += static_cast<double>(t.nbytes()) * (world_size() - 1);
  run_collective("all_gather", bytes, [&](cudaStream_t stream) {
    ncclResult_t result = ncclGroupStart();
    for (size_t i = 0; i < sends.size() && result == ncclSuccess; ++i)
      result = ncclAllGather(sends[i].data_ptr(), recvs[i].data_ptr(), sends[i].nbytes(), ncclUint8, comm_, stream);
    const ncclResult_t end = ncclGroupEnd();
    return result == ncclSuccess ? end : result;
  });
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const LaunchEnv& env, Device device) {
  return std::make_unique<NcclCommunicator>(env, device);
}

}  // namespace fastdit::distributed

#endif  // FASTDIT_WITH_NCCL
