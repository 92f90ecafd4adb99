// The TCP connections between rank 0 and every other rank (a star), open for the whole
// run; no MPI is linked.
//  - Rendezvous: rank 0 listens on MASTER_ADDR:MASTER_PORT, every other rank connects
//    (retrying until the timeout) and says who it is, and rank 0 hands every rank the
//    same bytes (the NCCL unique id).
//  - Failures: a rank that fails sends its error to rank 0, which passes it on; a rank
//    that dies is seen by its socket closing without the goodbye a finishing rank sends.
//    Every rank looks at the channel while it waits for a collective, so a failure
//    anywhere ends the whole group with that error instead of a hang.
//  - Data: the CPU transport (SocketCommunicator) sends its collectives through rank 0.
// Messages are frames {kind, length, bytes}; sockets are non-blocking and every wait has
// a deadline.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "distributed/launch.h"

namespace fastdit::distributed {

class Channel {
 public:
  // make_shared_bytes runs on rank 0 once every rank has joined; its result reaches all.
  // labels: the rank each rank is named by in messages (a split group's: their world
  // ranks); empty: their own.
  static std::unique_ptr<Channel> connect(const LaunchEnv& env, double timeout_seconds,
                                          const std::function<std::string()>& make_shared_bytes,
                                          std::vector<int> labels = {});
  ~Channel();  // says goodbye and closes
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return static_cast<int>(peers_.size()); }
  double timeout_seconds() const { return timeout_seconds_; }
  const std::string& shared_bytes() const { return shared_bytes_; }
  // The rank `rank` of this channel is named by in messages (its world rank).
  int name(int rank) const { return labels_.empty() ? rank : labels_[static_cast<size_t>(rank)]; }

  // Throws PeerFailure when a peer reported a failure or closed its connection without a
  // goodbye; returns at once otherwise.
  void check_peers();
  // Tells the other ranks that this one failed with `reason`. Best effort; never throws.
  void send_failure(const std::string& reason) noexcept;
  // On a rank other than 0 that ends because of another rank's failure: waits (up to
  // `seconds`, discarding what arrives) until rank 0 closes its connection, so that rank 0
  // learns of the failure from the rank that had it, not from this one's exit. Never throws.
  void linger(double seconds) noexcept;
  // Every rank's bytes in rank order, relayed by rank 0 (the CPU transport's collective).
  std::vector<std::string> all_gather(const std::string& mine);

  // The channel of a group split from `parent` (Communicator::split): its waits watch the
  // parent's peers too, and failures it sees or sends reach the parent's ranks. The parent
  // must outlive it.
  // A failure sent or seen on any channel of a process is sent on all of them.
  void set_parent(Channel& parent);
  // The address this rank's peers reach it at: MASTER_ADDR on rank 0, else the local
  // address of its connection to rank 0 (where a group split off can meet).
  std::string local_address() const;

 private:
  struct Peer {
    int fd = -1;
    bool said_goodbye = false;
    std::deque<std::string> data;  // data frames that arrived before they were asked for
  };
  Channel(const LaunchEnv& env, double timeout_seconds);
  void accept_ranks(int listener);
  void join_rank_zero();
  void send(int peer, uint32_t kind, const std::string& payload);
  // Reads one frame from the peer and acts on it; throws PeerFailure for failures.
  void receive_from(int peer);
  // Waits (up to the timeout) for a data frame from the peer.
  std::string wait_for_data(int peer);
  // Waits until some peer's socket is readable, up to `milliseconds`, and reads it.
  void poll_peers(int milliseconds);
  [[noreturn]] void fail(int from, const std::string& reason);

  int rank_;
  double timeout_seconds_;
  std::string address_;  // "MASTER_ADDR:MASTER_PORT", for messages
  LaunchEnv env_;
  std::vector<Peer> peers_;  // by rank; rank 0 holds one per other rank, the others hold rank 0's
  std::string shared_bytes_;
  std::string failure_;      // the failure already seen, thrown again by every later call
  Channel* parent_ = nullptr;
  std::vector<Channel*> children_;  // the groups split off this one, alive
  // Sends the failure to this channel's peers and to its children's, recursively.
  void send_failure_down(const std::string& reason) noexcept;
  std::vector<int> labels_;
};

}  // namespace fastdit::distributed
