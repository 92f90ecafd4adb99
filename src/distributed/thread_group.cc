#include "distributed/thread_group.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "distributed/host_communicator.h"

namespace fastdit::distributed {

struct ThreadGroup::Shared {
  int world_size;
  std::chrono::milliseconds timeout;
  std::mutex mutex;
  std::condition_variable changed;
  uint64_t generation = 0;        // barriers passed
  std::vector<bool> arrived;      // at the current barrier
  std::vector<std::span<const std::byte>> offered;
  bool aborted = false;
  std::string reason;

  void abort(const std::string& why) {
    const std::lock_guard lock(mutex);
    if (aborted) return;
    aborted = true;
    reason = why;
    changed.notify_all();
  }

  void barrier(int rank) {
    std::unique_lock lock(mutex);
    if (aborted) throw PeerFailure(reason);
    const uint64_t entered = generation;
    arrived[rank] = true;
    if (std::count(arrived.begin(), arrived.end(), true) == world_size) {
      std::fill(arrived.begin(), arrived.end(), false);
      ++generation;
      changed.notify_all();
      return;
    }
    changed.wait_for(lock, timeout, [&] { return generation != entered || aborted; });
    if (generation != entered) return;
    if (!aborted) {
      std::string missing;
      for (int r = 0; r < world_size; ++r)
        if (!arrived[r]) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      aborted = true;
      reason = detail::concat("collective timed out after ", timeout.count() / 1000.0,
                              " s waiting for rank(s) ", missing);
      changed.notify_all();
    }
    throw PeerFailure(reason);
  }
};

class ThreadGroup::Rank final : public HostCommunicator {
 public:
  Rank(Shared& shared, int rank) : shared_(shared), rank_(rank) {}
  int world_size() const override { return shared_.world_size; }
  int rank() const override { return rank_; }
  void abort(const std::string& reason) noexcept override {
    shared_.abort(detail::concat("rank ", rank_, " failed: ", reason));
  }

 protected:
  void exchange(ByteView mine, const std::function<void(std::span<const ByteView> all)>& read) override {
    {
      const std::lock_guard lock(shared_.mutex);
      shared_.offered[rank_] = mine;
    }
    shared_.barrier(rank_);
    // Nobody rewrites its offer before everyone has passed the second barrier.
    const std::vector<ByteView> all = shared_.offered;
    read(all);
    shared_.barrier(rank_);
  }

 private:
  Shared& shared_;
  int rank_;
};

ThreadGroup::ThreadGroup(int world_size, std::chrono::milliseconds timeout)
    : shared_(std::make_unique<Shared>()) {
  FASTDIT_CHECK(world_size >= 1, "ThreadGroup: world size ", world_size);
  shared_->world_size = world_size;
  shared_->timeout = timeout;
  shared_->arrived.assign(world_size, false);
  shared_->offered.resize(world_size);
  for (int r = 0; r < world_size; ++r) ranks_.push_back(std::make_unique<Rank>(*shared_, r));
}

ThreadGroup::~ThreadGroup() = default;

int ThreadGroup::world_size() const { return shared_->world_size; }

Communicator& ThreadGroup::rank(int r) {
  FASTDIT_CHECK(r >= 0 && r < world_size(), "ThreadGroup: no rank ", r);
  return *ranks_[r];
}

std::vector<std::exception_ptr> ThreadGroup::run(const std::function<void(Communicator&)>& body) {
  std::vector<std::exception_ptr> failures(world_size());
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size(); ++r) {
    threads.emplace_back([&, r] {
      try {
        body(*ranks_[r]);
      } catch (const PeerFailure&) {
        failures[r] = std::current_exception();
      } catch (const std::exception& e) {
        failures[r] = std::current_exception();
        ranks_[r]->abort(e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  return failures;
}

}  // namespace fastdit::distributed
