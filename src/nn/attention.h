// The two attention layers every DiT uses (FastVideo's split):
//  - DistributedAttention: full-sequence self-attention that takes part in sequence
//    parallelism. Its inputs are this rank's sequence shard; RoPE is applied with the
//    full-sequence table after the exchange; replicated tokens (e.g. the text stream of
//    joint attention) are appended after the main tokens.
//  - LocalAttention: no communication (cross-attention to replicated context, window
//    attention).
// Like diffusers' attention processors they hold no parameters and are not modules, so
// the module tree (and traces) match the reference's.
#pragma once

#include "nn/rotary.h"
#include "ops/ops.h"

namespace fastdit::nn {

// Sequence-parallel layout of the tokens a DistributedAttention sees. With one rank
// every collective is the identity.
class SequenceParallel {
 public:
  virtual ~SequenceParallel() = default;
  virtual int world_size() const = 0;
  virtual int rank() const = 0;
  // [B, S_local, H, D] x n (same shapes) -> [B, S_full, H / world, D] x n: one
  // all-to-all for all n tensors, padding dropped (S_full = the unpadded length).
  virtual std::vector<Tensor> sequence_to_heads(const std::vector<Tensor>& shards, int64_t full_length) const = 0;
  // The inverse: [B, S_full, H / world, D] -> [B, S_local, H, D].
  virtual Tensor heads_to_sequence(const Tensor& full, int64_t local_length) const = 0;
  // [B, L, H / world, D] on every rank -> [B, L, H, D] (heads gathered in rank order).
  virtual Tensor gather_heads(const Tensor& part) const = 0;
};

// The single-process layout (all collectives are the identity).
const SequenceParallel& single_process();

class DistributedAttention {
 public:
  explicit DistributedAttention(const SequenceParallel* parallel = nullptr)
      : parallel_(parallel ? parallel : &single_process()) {}

  struct Output {
    Tensor out;             // [B, S_local, H, Dv]
    Tensor replicated_out;  // [B, S_rep, H, Dv] or undefined
  };
  // q, k, v [B, S_local, H, D]; full_length = the unpadded global sequence length;
  // rope (optional) is the full-sequence table; replicated_* [B, S_rep, H, D] optional,
  // the same on every rank, get no rotary embedding.
  Output forward(const Tensor& q, const Tensor& k, const Tensor& v, int64_t full_length,
                 const RotaryTable* rope, ops::RopeStyle style, const Tensor& replicated_q = {},
                 const Tensor& replicated_k = {}, const Tensor& replicated_v = {}) const;

  const SequenceParallel& parallel() const { return *parallel_; }

 private:
  const SequenceParallel* parallel_;
};

class LocalAttention {
 public:
  // q [B, Sq, H, D], k/v [B, Sk, H, D]; rope (optional) applies to q and k alike.
  Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, const RotaryTable* rope = nullptr,
                 ops::RopeStyle style = ops::RopeStyle::Interleaved) const;
};

}  // namespace fastdit::nn
