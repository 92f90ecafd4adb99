#include "distributed/thread_group.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <tuple>
#include <mutex>
#include <thread>

#include "distributed/host_communicator.h"

namespace fastdit::distributed {

// One group of ranks: the whole ThreadGroup, or a group split from it. The lock, the
// condition and the abort flag are the root's, so an abort anywhere wakes every waiting
// rank of every group.
struct ThreadGroup::Shared {
  Shared* root = this;
  int world_size = 1;
  std::chrono::milliseconds timeout{0};
  uint64_t generation = 0;    // barriers passed
  std::vector<bool> arrived;  // at the current barrier
  std::vector<std::span<const std::byte>> offered;
  // Root only: the abort, and the groups split off, by (parent group, split call, color).
  std::mutex mutex;
  std::condition_variable changed;
  bool aborted = false;
  std::string reason;
  std::map<std::tuple<const Shared*, uint64_t, int>, std::shared_ptr<Shared>> groups;

  Shared(int size, std::chrono::milliseconds limit, Shared* parent_root)
      : root(parent_root ? parent_root : this), world_size(size), timeout(limit), arrived(size, false),
        offered(size) {}

  void abort(const std::string& why) {
    const std::lock_guard lock(root->mutex);
    if (root->aborted) return;
    root->aborted = true;
    root->reason = why;
    root->changed.notify_all();
  }

  void barrier(int rank) {
    std::unique_lock lock(root->mutex);
    if (root->aborted) throw PeerFailure(root->reason);
    const uint64_t entered = generation;
    arrived[rank] = true;
    if (std::count(arrived.begin(), arrived.end(), true) == world_size) {
      std::fill(arrived.begin(), arrived.end(), false);
      ++generation;
      root->changed.notify_all();
      return;
    }
    root->changed.wait_for(lock, timeout, [&] { return generation != entered || root->aborted; });
    if (generation != entered) return;
    if (!root->aborted) {
      std::string missing;
      for (int r = 0; r < world_size; ++r)
        if (!arrived[r]) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      root->aborted = true;
      root->reason = detail::concat("collective timed out after ", timeout.count() / 1000.0,
                                    " s waiting for rank(s) ", missing);
      root->changed.notify_all();
    }
    throw PeerFailure(root->reason);
  }
};

class ThreadGroup::Rank final : public HostCommunicator {
 public:
  // keep: a split group's state, held by its ranks (null for the ThreadGroup's own).
  // label: the rank failures are reported as (a split group's ranks keep their world rank).
  Rank(Shared& shared, int rank, std::shared_ptr<Shared> keep = nullptr, int label = -1)
      : shared_(shared), rank_(rank), label_(label < 0 ? rank : label), keep_(std::move(keep)) {}
  int world_size() const override { return shared_.world_size; }
  int rank() const override { return rank_; }
  void abort(const std::string& reason) noexcept override {
    shared_.abort(detail::concat("rank ", label_, " failed: ", reason));
  }
  std::unique_ptr<Communicator> split(int color) override {
    // Every rank's color, through a collective of this group (which also orders the splits).
    const Tensor mine = Tensor::from_vector<float>({static_cast<float>(color)}, {1});
    Tensor all = Tensor::empty({world_size(), 1}, DType::Float32, Device::cpu());
    all_gather(std::span<const Tensor>(&mine, 1), std::span<Tensor>(&all, 1));
    const std::vector<float> colors = all.to_float_vector();
    int size = 0, index = 0;
    for (int r = 0; r < world_size(); ++r) {
      if (colors[r] != static_cast<float>(color)) continue;
      if (r == rank_) index = size;
      ++size;
    }
    Shared& root = *shared_.root;
    std::shared_ptr<Shared> group;
    {
      const std::lock_guard lock(root.mutex);
      auto& slot = root.groups[{&shared_, splits_, color}];
      if (!slot) slot = std::make_shared<Shared>(size, shared_.timeout, &root);
      group = slot;
    }
    ++splits_;
    return std::make_unique<Rank>(*group, index, group, label_);
  }

 protected:
  void exchange(ByteView mine, const std::function<void(std::span<const ByteView> all)>& read) override {
    {
      const std::lock_guard lock(shared_.root->mutex);
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
  int label_;
  std::shared_ptr<Shared> keep_;
  uint64_t splits_ = 0;  // this rank's split calls so far (every rank of the group makes the same)
};

ThreadGroup::ThreadGroup(int world_size, std::chrono::milliseconds timeout)
    : shared_(std::make_unique<Shared>(std::max(world_size, 1), timeout, nullptr)) {
  FASTDIT_CHECK(world_size >= 1, "ThreadGroup: world size ", world_size);
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
