// How a token sequence is split over the ranks of a sequence-parallel group: padded with
// zeros to a multiple of the world size P, rank r holds the contiguous shard
// [r·S, (r+1)·S), S = ceil(L / P). All the layout work of sequence parallelism (padding,
// the head split of Ulysses attention, reordering what a collective returns) lives here,
// over the two collectives of a distributed::Communicator, so every transport (NCCL,
// sockets, the threads of the CPU tests) shares it. Without a communicator every
// collective is the identity.
//
// A model takes part through two calls: shard_sequence after the patch embedding (and on
// anything else that is per token, such as Wan 2.2's per-token timesteps) and
// gather_sequence before unpatchifying; DistributedAttention does the rest.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "distributed/communicator.h"

namespace fastdit::nn {

class SequenceParallel {
 public:
  SequenceParallel() = default;
  explicit SequenceParallel(distributed::Communicator& communicator) : comm_(&communicator) {}
  int world_size() const { return comm_ ? comm_->world_size() : 1; }
  int rank() const { return comm_ ? comm_->rank() : 0; }
  distributed::Communicator* communicator() const { return comm_; }

  // S: the tokens every rank holds of a sequence of full_length.
  int64_t shard_length(int64_t full_length) const;
  // The tokens of this rank's shard that are real, not padding.
  int64_t valid_length(int64_t full_length) const;

  // x with the whole sequence on `dim` -> this rank's shard, zero-padded past the end.
  Tensor shard_sequence(const Tensor& x, int64_t dim) const;
  // The inverse, on every rank: each rank's shard -> the sequence of full_length. Several
  // tensors of one shape travel in one collective.
  Tensor gather_sequence(const Tensor& x, int64_t dim, int64_t full_length) const;
  std::vector<Tensor> gather_sequence(std::span<const Tensor> xs, int64_t dim, int64_t full_length) const;

  // Ulysses attention gives each rank H / P heads, so P must divide H.
  bool splits_heads(int64_t heads) const { return heads % world_size() == 0; }
  // [B, S, H, D] x n -> [B, full_length, H/P, D] x n in one all-to-all: the whole
  // sequence (padding dropped) for this rank's heads [r·H/P, (r+1)·H/P).
  std::vector<Tensor> sequence_to_heads(std::span<const Tensor> shards, int64_t full_length) const;
  // The inverse: [B, L, H/P, D] -> [B, S, H, D], padding rows zero.
  Tensor heads_to_sequence(const Tensor& heads) const;
  // [B, L, H/P, D] on every rank -> [B, L, H, D], heads in rank order.
  Tensor gather_heads(const Tensor& part) const;

 private:
  distributed::Communicator* comm_ = nullptr;
};

// The single-process layout.
const SequenceParallel& single_process();

// x zero-padded on `dim` up to `length` (x itself when it is that long already).
Tensor pad_sequence(const Tensor& x, int64_t dim, int64_t length);

}  // namespace fastdit::nn
