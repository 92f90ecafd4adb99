#include "nn/sequence_parallel.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <numeric>

#include "ops/ops.h"

namespace fastdit::nn {

namespace {

std::string head_split_error(int64_t heads, int world_size) {
  std::string sizes;
  for (int64_t p = 1; p <= heads; ++p)
    if (heads % p == 0) sizes += (sizes.empty() ? "" : ", ") + std::to_string(p);
  return detail::concat("sequence parallelism over ", world_size, " ranks splits the attention heads evenly, but ",
                        heads, " heads cannot be split over ", world_size, " ranks; world sizes that work: ", sizes);
}

// recv [P, d0, ..., S, ...] (the shard axis at `dim` + 1) -> [d0, ..., P·S, ...].
Tensor merge_rank_axis(const Tensor& recv, int64_t dim) {
  std::vector<int64_t> order(static_cast<size_t>(recv.dim()));
  std::iota(order.begin(), order.end(), 0);
  std::rotate(order.begin(), order.begin() + 1, order.begin() + 1 + dim);  // move axis 0 to dim
  Shape merged(recv.shape().begin() + 1, recv.shape().end());
  merged[dim] *= recv.size(0);
  return recv.permute(order).reshape(merged);  // a view when B == 1
}

}  // namespace

const SequenceParallel& single_process() {
  static const SequenceParallel instance;
  return instance;
}

Tensor pad_sequence(const Tensor& x, int64_t dim, int64_t length) {
  const int64_t have = x.size(dim);
  FASTDIT_CHECK(have <= length, "pad_sequence: ", x.str(), " is longer than ", length, " on dim ", dim);
  if (have == length) return x;
  Shape pad = x.shape();
  pad[dim < 0 ? dim + x.dim() : dim] = length - have;
  const Tensor zeros = Tensor::zeros(pad, x.dtype(), x.device());
  if (have == 0) return zeros;
  const Tensor parts[] = {x, zeros};
  return ops::concat(parts, dim);
}

int64_t SequenceParallel::shard_length(int64_t full_length) const {
  return (full_length + world_size() - 1) / world_size();
}

int64_t SequenceParallel::valid_length(int64_t full_length) const {
  const int64_t shard = shard_length(full_length);
  return std::clamp<int64_t>(full_length - rank() * shard, 0, shard);
}

Tensor SequenceParallel::shard_sequence(const Tensor& x, int64_t dim) const {
  if (world_size() == 1) return x;
  const int64_t full_length = x.size(dim), shard = shard_length(full_length);
  const int64_t start = std::min(rank() * shard, full_length), valid = valid_length(full_length);
  return pad_sequence(x.narrow(dim, start, valid).contiguous(), dim, shard);
}

Tensor SequenceParallel::gather_sequence(const Tensor& x, int64_t dim, int64_t full_length) const {
  return gather_sequence(std::span<const Tensor>(&x, 1), dim, full_length).front();
}

std::vector<Tensor> SequenceParallel::gather_sequence(std::span<const Tensor> xs, int64_t dim,
                                                      int64_t full_length) const {
  std::vector<Tensor> sends, recvs, out;
  for (const Tensor& x : xs) {
    FASTDIT_CHECK(x.size(dim) == shard_length(full_length), "gather_sequence: ", x.str(), " is not a shard of ",
                  full_length, " tokens on dim ", dim, " over ", world_size(), " ranks");
    if (world_size() == 1) continue;
    sends.push_back(x.contiguous());
    Shape shape = x.shape();
    shape.insert(shape.begin(), world_size());
    recvs.push_back(Tensor::empty(shape, x.dtype(), x.device()));
  }
  if (world_size() == 1) return {xs.begin(), xs.end()};
  comm_->all_gather(sends, recvs);
  const int64_t d = dim < 0 ? dim + xs.front().dim() : dim;
  for (const Tensor& recv : recvs) out.push_back(merge_rank_axis(recv, d).narrow(d, 0, full_length));
  return out;
}

std::vector<Tensor> SequenceParallel::sequence_to_heads(std::span<const Tensor> shards, int64_t full_length) const {
  const int p = world_size();
  std::vector<Tensor> sends, recvs, out;
  for (const Tensor& t : shards) {
    FASTDIT_CHECK(t.dim() == 4 && t.size(1) == shard_length(full_length), "sequence_to_heads: ", t.str(),
                  " is not a [B, S, H, D] shard of ", full_length, " tokens over ", p, " ranks");
    FASTDIT_CHECK(splits_heads(t.size(2)), head_split_error(t.size(2), p));
    if (p == 1) {
      out.push_back(t);
      continue;
    }
    const int64_t b = t.size(0), s = t.size(1), h = t.size(2) / p, d = t.size(3);
    // Peer-major: chunk j holds the shard's tokens for the heads rank j will own.
    sends.push_back(t.reshape({b, s, p, h, d}).permute({2, 0, 1, 3, 4}).contiguous());
    recvs.push_back(Tensor::empty(sends.back().shape(), t.dtype(), t.device()));
  }
  if (p == 1) return out;
  comm_->all_to_all(sends, recvs);
  // recv[j] is rank j's shard of the sequence: [P, B, S, h, D] -> [B, P·S, h, D].
  for (const Tensor& recv : recvs) out.push_back(merge_rank_axis(recv, 1).narrow(1, 0, full_length));
  return out;
}

Tensor SequenceParallel::heads_to_sequence(const Tensor& heads) const {
  const int p = world_size();
  if (p == 1) return heads;
  const int64_t b = heads.size(0), s = shard_length(heads.size(1)), h = heads.size(2), d = heads.size(3);
  const Tensor padded = pad_sequence(heads, 1, p * s);
  const Tensor send = padded.reshape({b, p, s, h, d}).permute({1, 0, 2, 3, 4}).contiguous();
  Tensor recv = Tensor::empty(send.shape(), send.dtype(), send.device());
  comm_->all_to_all(std::span<const Tensor>(&send, 1), std::span<Tensor>(&recv, 1));
  // recv[j] holds head group j of this rank's tokens: [P, B, S, h, D] -> [B, S, P·h, D].
  return recv.permute({1, 2, 0, 3, 4}).reshape({b, s, p * h, d});
}

Tensor SequenceParallel::gather_heads(const Tensor& part) const {
  const int p = world_size();
  if (p == 1) return part;
  const Tensor send = part.contiguous();
  Shape shape = send.shape();
  shape.insert(shape.begin(), p);
  Tensor recv = Tensor::empty(shape, send.dtype(), send.device());
  comm_->all_gather(std::span<const Tensor>(&send, 1), std::span<Tensor>(&recv, 1));
  return recv.permute({1, 2, 0, 3, 4}).reshape({part.size(0), part.size(1), p * part.size(2), part.size(3)});
}

int SequenceParallel::overlap_groups(int64_t heads) const {
  static const int wanted = [] {
    const char* text = std::getenv("FASTDIT_SP_OVERLAP_GROUPS");
    if (!text || !*text) return 4;
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    FASTDIT_CHECK(*end == '\0' && value >= 1 && value <= 64, "FASTDIT_SP_OVERLAP_GROUPS must be a whole number in ",
                  "1..64, got '", text, "'");
    return static_cast<int>(value);
  }();
  if (world_size() == 1) return 1;  // nothing to exchange, nothing to hide
  const int64_t local = heads / world_size();
  int groups = 1;
  for (int g = 1; g <= wanted; ++g)
    if (local % g == 0) groups = g;
  return groups;
}

Tensor SequenceParallel::attend_heads_overlapped(const Tensor& q, const Tensor& k, const Tensor& v,
                                                 int64_t full_length, int groups, const AttendFn& attend) const {
  const int p = world_size();
  FASTDIT_CHECK(q.dim() == 4 && q.size(1) == shard_length(full_length) && k.shape() == q.shape() &&
                    v.shape() == q.shape(),
                "attend_heads_overlapped: q ", q.str(), ", k ", k.str(), ", v ", v.str(),
                " are not [B, S, H, D] shards of ", full_length, " tokens over ", p, " ranks");
  FASTDIT_CHECK(splits_heads(q.size(2)), head_split_error(q.size(2), p));
  const int64_t b = q.size(0), s = q.size(1), h = q.size(2) / p, d = q.size(3);
  FASTDIT_CHECK(groups >= 1 && h % groups == 0, "attend_heads_overlapped: ", groups,
                " groups do not divide this rank's ", h, " heads");
  FASTDIT_CHECK(p > 1, "attend_heads_overlapped needs a group of several ranks");
  const int64_t hg = h / groups;
  // Group-major, then peer-major: send[g][j] holds this shard's tokens for the heads of
  // group g that rank j will own (heads j·h + g·hg + [0, hg)). All packed before the
  // first exchange, so every incoming exchange waits for this point only.
  std::array<Tensor, 3> packed;
  const Tensor inputs[] = {q, k, v};
  for (int i = 0; i < 3; ++i)
    packed[i] = inputs[i].reshape({b, s, p, groups, hg, d}).permute({3, 2, 0, 1, 4, 5}).contiguous();
  const distributed::Communicator::Mark inputs_ready = comm_->mark();
  const Shape chunk{p, b, s, hg, d};
  auto bring_in = [&](int64_t g) {  // group g's heads of the whole sequence, [B, L, hg, D] x 3
    std::vector<Tensor> sends, recvs, out;
    for (const Tensor& t : packed) {
      sends.push_back(t.narrow(0, g, 1).reshape(chunk));
      recvs.push_back(Tensor::empty(chunk, t.dtype(), t.device()));
    }
    comm_->all_to_all_after(inputs_ready, sends, recvs);
    for (const Tensor& recv : recvs) out.push_back(merge_rank_axis(recv, 1).narrow(1, 0, full_length));
    return out;
  };
  // returned[g][j]: head group g of rank j, for this rank's tokens.
  Tensor returned = Tensor::empty({groups, p, b, s, hg, d}, q.dtype(), q.device());
  std::vector<Tensor> leaving(groups);
  std::vector<distributed::Communicator::Mark> left_ready(groups);
  auto send_back = [&](int64_t g) {
    Tensor recv = returned.narrow(0, g, 1).reshape(chunk);
    comm_->all_to_all_after(left_ready[g], std::span<const Tensor>(&leaving[g], 1), std::span<Tensor>(&recv, 1));
    leaving[g] = Tensor();
  };
  for (int64_t g = 0; g < groups; ++g) {
    const auto in = bring_in(g);  // runs while group g - 1 attends
    const Tensor attended = attend(in[0], in[1], in[2]);
    // Sequence-block-major for the way back: chunk j goes to rank j.
    leaving[g] = pad_sequence(attended, 1, p * s).reshape({b, p, s, hg, d}).permute({1, 0, 2, 3, 4}).contiguous();
    left_ready[g] = comm_->mark();
    if (g > 0) send_back(g - 1);  // runs while group g attends
  }
  send_back(groups - 1);
  // [G, P, B, S, hg, D] -> [B, S, P, G, hg, D]: head j·h + g·hg + i, as the model numbers them.
  return returned.permute({2, 3, 1, 0, 4, 5}).reshape({b, s, p * h, d});
}

}  // namespace fastdit::nn
