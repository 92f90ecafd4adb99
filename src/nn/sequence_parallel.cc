#include "nn/sequence_parallel.h"

#include <algorithm>
#include <array>
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

}  // namespace fastdit::nn
