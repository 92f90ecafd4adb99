#include "distributed/channel.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>

#include "distributed/communicator.h"

namespace fastdit::distributed {

namespace {

enum Kind : uint32_t { kHello = 1, kShared, kData, kFailure, kGoodbye };
constexpr uint32_t kMagic = 0x66647370;  // "fdsp"
struct Header {
  uint32_t kind;
  uint32_t magic;
  uint64_t length;
};
struct Frame {
  uint32_t kind = 0;
  std::string payload;
};

using Clock = std::chrono::steady_clock;
Clock::time_point after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}
int milliseconds_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

enum class Io { Done, Closed, TimedOut };

// Waits up to 100 ms (less near the deadline) for the socket; TimedOut once it has passed.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  const int left = milliseconds_left(deadline);
  if (left == 0) return false;
  pollfd p{fd, events, 0};
  ::poll(&p, 1, std::min(left, 100));
  return true;
}

Io write_all(int fd, const char* data, size_t size, Clock::time_point deadline) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_ready(fd, POLLOUT, deadline)) return Io::TimedOut;
    } else {
      return Io::Closed;  // EPIPE, ECONNRESET: the peer is gone
    }
  }
  return Io::Done;
}

Io read_all(int fd, char* data, size_t size, Clock::time_point deadline) {
  while (size > 0) {
    const ssize_t n = ::recv(fd, data, size, 0);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_ready(fd, POLLIN, deadline)) return Io::TimedOut;
    } else {
      return Io::Closed;
    }
  }
  return Io::Done;
}

Io write_frame(int fd, uint32_t kind, const std::string& payload, Clock::time_point deadline) {
  const Header header{kind, kMagic, payload.size()};
  const Io io = write_all(fd, reinterpret_cast<const char*>(&header), sizeof header, deadline);
  return io == Io::Done ? write_all(fd, payload.data(), payload.size(), deadline) : io;
}

Io read_frame(int fd, Frame& frame, Clock::time_point deadline) {
  Header header{};
  const Io io = read_all(fd, reinterpret_cast<char*>(&header), sizeof header, deadline);
  if (io != Io::Done) return io;
  FASTDIT_CHECK(header.magic == kMagic, "sequence-parallel channel: a peer sent bytes that are not a fastdit frame "
                "(is another program using MASTER_PORT?)");
  frame.kind = header.kind;
  frame.payload.resize(header.length);
  return read_all(fd, frame.payload.data(), frame.payload.size(), deadline);
}

// Never throws: for messages to ranks that may already be gone.
void try_write_frame(int fd, uint32_t kind, const std::string& payload) noexcept {
  if (fd >= 0) write_frame(fd, kind, payload, after(1.0));
}

void set_nonblocking(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

addrinfo* resolve(const LaunchEnv& env) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const int status = ::getaddrinfo(env.master_addr.c_str(), std::to_string(env.master_port).c_str(), &hints, &result);
  FASTDIT_CHECK(status == 0 && result, "MASTER_ADDR ", env.master_addr, ": ", ::gai_strerror(status));
  return result;
}

int listen_on(const LaunchEnv& env, const std::string& address) {
  addrinfo* where = resolve(env);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool ok = fd >= 0 && ::bind(fd, where->ai_addr, where->ai_addrlen) == 0 && ::listen(fd, env.world_size) == 0;
  const int error = errno;
  ::freeaddrinfo(where);
  if (!ok) {
    if (fd >= 0) ::close(fd);
    FASTDIT_FAIL("rank 0 cannot listen on ", address, ": ", std::strerror(error),
                 " (set MASTER_ADDR / MASTER_PORT to a free local address)");
  }
  set_nonblocking(fd);
  return fd;
}

std::string hello(int world_size, int rank) { return detail::concat("fastdit-sp ", world_size, " ", rank); }

std::string exited(int rank) { return detail::concat("rank ", rank, " exited without finishing (it crashed or was killed)"); }

}  // namespace

Channel::Channel(const LaunchEnv& env, double timeout_seconds)
    : rank_(env.rank),
      timeout_seconds_(timeout_seconds),
      address_(env.master_addr + ":" + std::to_string(env.master_port)),
      env_(env),
      peers_(static_cast<size_t>(env.world_size)) {}

Channel::~Channel() {
  if (parent_) std::erase(parent_->children_, this);
  for (Peer& peer : peers_) {
    try_write_frame(peer.fd, kGoodbye, {});
    if (peer.fd >= 0) ::close(peer.fd);
  }
}

std::unique_ptr<Channel> Channel::connect(const LaunchEnv& env, double timeout_seconds,
                                          const std::function<std::string()>& make_shared_bytes,
                                          std::vector<int> labels) {
  std::unique_ptr<Channel> channel(new Channel(env, timeout_seconds));
  FASTDIT_CHECK(labels.empty() || static_cast<int>(labels.size()) == env.world_size, "channel: ", labels.size(),
                " labels for ", env.world_size, " ranks");
  channel->labels_ = std::move(labels);
  if (env.rank == 0) {
    if (env.world_size > 1) {
      const int listener = listen_on(env, channel->address_);
      try {
        channel->accept_ranks(listener);
      } catch (...) {
        ::close(listener);
        throw;
      }
      ::close(listener);
    }
    channel->shared_bytes_ = make_shared_bytes();
    for (int r = 1; r < env.world_size; ++r) channel->send(r, kShared, channel->shared_bytes_);
  } else {
    channel->join_rank_zero();
  }
  return channel;
}

void Channel::accept_ranks(int listener) {
  const auto deadline = after(timeout_seconds_);
  int joined = 1;
  while (joined < world_size()) {
    if (!wait_ready(listener, POLLIN, deadline)) {
      std::string missing;
      for (int r = 1; r < world_size(); ++r)
        if (peers_[r].fd < 0) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      fail(-1, detail::concat("rank 0: only ", joined, " of ", world_size(), " ranks joined at ", address_, " within ",
                              timeout_seconds_, " s (FASTDIT_NCCL_TIMEOUT_S); missing rank(s) ", missing));
    }
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    set_nonblocking(fd);
    Frame frame;
    if (read_frame(fd, frame, deadline) != Io::Done || frame.kind != kHello) {
      ::close(fd);  // a stray connection that never introduced itself
      continue;
    }
    std::istringstream words(frame.payload);
    std::string tag;
    int world = 0, rank = -1;
    words >> tag >> world >> rank;
    const bool valid = world == world_size() && rank > 0 && rank < world_size() && peers_[rank].fd < 0;
    if (!valid) {
      const std::string reason = detail::concat("rank 0 at ", address_, " expected ", world_size(),
                                                " ranks but a process joined as '", frame.payload,
                                                "' (two runs on one MASTER_PORT, or mismatched WORLD_SIZE/RANK?)");
      try_write_frame(fd, kFailure, reason);
      ::close(fd);
      fail(-1, reason);
    }
    peers_[rank].fd = fd;
    ++joined;
  }
}

void Channel::join_rank_zero() {
  const auto deadline = after(timeout_seconds_);
  addrinfo* where = resolve(env_);
  int fd = -1;
  while (true) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const timeval connect_limit{5, 0};  // a host that drops the handshake must not outlast the deadline
    if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &connect_limit, sizeof connect_limit);
    if (fd >= 0 && ::connect(fd, where->ai_addr, where->ai_addrlen) == 0) break;
    if (fd >= 0) ::close(fd);
    if (milliseconds_left(deadline) == 0) {
      ::freeaddrinfo(where);
      FASTDIT_FAIL("rank ", rank_, " could not reach rank 0 at ", address_, " within ", timeout_seconds_,
                   " s (FASTDIT_NCCL_TIMEOUT_S); is rank 0 running?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::freeaddrinfo(where);
  set_nonblocking(fd);
  peers_[0].fd = fd;
  send(0, kHello, hello(world_size(), rank_));
  Frame frame;
  const Io io = read_frame(fd, frame, deadline);
  if (io == Io::TimedOut)
    fail(-1, detail::concat("rank ", rank_, ": rank 0 at ", address_, " sent no rendezvous reply within ",
                            timeout_seconds_, " s (FASTDIT_NCCL_TIMEOUT_S)"));
  if (io == Io::Closed) fail(0, "rank 0 closed the connection during the rendezvous at " + address_);
  if (frame.kind == kFailure) fail(0, frame.payload);
  FASTDIT_CHECK(frame.kind == kShared, "rank ", rank_, ": unexpected rendezvous reply from rank 0 at ", address_);
  shared_bytes_ = std::move(frame.payload);
}

void Channel::send(int peer, uint32_t kind, const std::string& payload) {
  const Io io = write_frame(peers_[peer].fd, kind, payload, after(timeout_seconds_));
  if (io == Io::Closed) fail(peer, exited(name(peer)));
  if (io == Io::TimedOut)
    fail(-1, detail::concat("rank ", name(rank_), ": sending to rank ", name(peer), " timed out after ", timeout_seconds_,
                            " s (FASTDIT_NCCL_TIMEOUT_S)"));
}

void Channel::receive_from(int peer) {
  Peer& p = peers_[peer];
  Frame frame;
  const Io io = read_frame(p.fd, frame, after(timeout_seconds_));
  if (io != Io::Done) {
    ::close(p.fd);
    p.fd = -1;
    if (!p.said_goodbye) fail(peer, exited(name(peer)));
    return;
  }
  if (frame.kind == kData) p.data.push_back(std::move(frame.payload));
  if (frame.kind == kFailure) fail(peer, frame.payload);
  if (frame.kind == kGoodbye) p.said_goodbye = true;
}

void Channel::poll_peers(int milliseconds) {
  std::vector<pollfd> fds;
  std::vector<int> ranks;
  for (int r = 0; r < world_size(); ++r) {
    if (peers_[r].fd < 0) continue;
    fds.push_back({peers_[r].fd, POLLIN, 0});
    ranks.push_back(r);
  }
  if (fds.empty()) return;
  if (::poll(fds.data(), fds.size(), milliseconds) <= 0) return;
  for (size_t i = 0; i < fds.size(); ++i)
    if (fds[i].revents) receive_from(ranks[i]);
}

void Channel::check_peers() {
  if (!failure_.empty()) throw PeerFailure(failure_);
  poll_peers(0);
  if (parent_) parent_->check_peers();
}

void Channel::linger(double seconds) noexcept {
  if (rank_ == 0 || peers_[0].fd < 0) return;
  const auto deadline = after(seconds);
  char buffer[4096];
  while (milliseconds_left(deadline) > 0) {
    pollfd p{peers_[0].fd, POLLIN, 0};
    if (::poll(&p, 1, std::min(milliseconds_left(deadline), 100)) <= 0) continue;
    const ssize_t n = ::recv(peers_[0].fd, buffer, sizeof buffer, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return;
  }
}

std::string Channel::local_address() const {
  if (rank_ == 0 || peers_[0].fd < 0) return env_.master_addr;
  sockaddr_in addr{};
  socklen_t size = sizeof addr;
  char text[INET_ADDRSTRLEN] = {};
  if (::getsockname(peers_[0].fd, reinterpret_cast<sockaddr*>(&addr), &size) != 0 ||
      !::inet_ntop(AF_INET, &addr.sin_addr, text, sizeof text))
    FASTDIT_FAIL("rank ", rank_, ": the local address of the connection to rank 0: ", std::strerror(errno));
  return text;
}

std::string Channel::wait_for_data(int peer) {
  const auto deadline = after(timeout_seconds_);
  Peer& p = peers_[peer];
  while (p.data.empty()) {
    if (!failure_.empty()) throw PeerFailure(failure_);
    if (p.fd < 0)
      fail(peer, detail::concat("rank ", name(peer), " finished while rank ", name(rank_),
                                " still waited for it (the ranks ran different programs)"));
    const int left = milliseconds_left(deadline);
    if (left == 0)
      fail(-1, detail::concat("rank ", name(rank_), ": a collective timed out after ", timeout_seconds_,
                              " s waiting for rank ", name(peer), " (FASTDIT_NCCL_TIMEOUT_S)"));
    poll_peers(std::min(left, 100));
    if (parent_) parent_->check_peers();
  }
  std::string data = std::move(p.data.front());
  p.data.pop_front();
  return data;
}

std::vector<std::string> Channel::all_gather(const std::string& mine) {
  check_peers();
  std::vector<std::string> all(world_size());
  all[rank_] = mine;
  if (rank_ != 0) {
    send(0, kData, mine);
    for (int r = 0; r < world_size(); ++r) all[r] = wait_for_data(0);
    return all;
  }
  for (int r = 1; r < world_size(); ++r) all[r] = wait_for_data(r);
  for (int to = 1; to < world_size(); ++to)
    for (const std::string& data : all) send(to, kData, data);
  return all;
}

void Channel::set_parent(Channel& parent) {
  parent_ = &parent;
  parent.children_.push_back(this);
}

void Channel::send_failure_down(const std::string& reason) noexcept {
  if (failure_.empty()) failure_ = reason;
  for (int r = 0; r < world_size(); ++r)
    if (r != rank_) try_write_frame(peers_[r].fd, kFailure, reason);
  for (Channel* child : children_) child->send_failure_down(reason);
}

void Channel::send_failure(const std::string& reason) noexcept {
  Channel* root = this;
  while (root->parent_) root = root->parent_;
  root->send_failure_down(reason);
}

void Channel::fail(int from, const std::string& reason) {
  if (failure_.empty()) {
    failure_ = reason;
    // Rank 0 passes a failure on to every other rank; another rank tells rank 0 of its own.
    for (int r = 0; r < world_size(); ++r)
      if (r != rank_ && r != from && (rank_ == 0 || r == 0)) try_write_frame(peers_[r].fd, kFailure, reason);
    if (parent_) send_failure(reason);  // the ranks outside this group end too
  }
  throw PeerFailure(failure_);
}

}  // namespace fastdit::distributed
