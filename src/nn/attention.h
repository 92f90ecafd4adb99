// The two attention layers every DiT uses (FastVideo's split):
//  - DistributedAttention: full-sequence self-attention that takes part in sequence
//    parallelism. Its inputs are this rank's sequence shard; RoPE is applied with the
//    full-sequence table after the exchange; replicated tokens (e.g. the text stream of
//    joint attention) are appended after the main tokens. When the world size divides
//    the head count it is Ulysses (one all-to-all trades the sequence split for a head
//    split, and one returns it); otherwise each rank gathers the whole sequence's keys
//    and values and attends with its own queries: the same result for any head count,
//    at P/2 times Ulysses' traffic.
//  - LocalAttention: no communication (cross-attention to replicated context, window
//    attention).
// Like diffusers' attention processors they hold no parameters and are not modules, so
// the module tree (and traces) match the reference's.
#pragma once

#include <span>

#include "nn/rotary.h"
#include "nn/sequence_parallel.h"
#include "ops/ops.h"

namespace fastdit::nn {

class DistributedAttention {
 public:
  explicit DistributedAttention(const SequenceParallel* parallel = nullptr)
      : parallel_(parallel ? parallel : &single_process()) {}

  struct Output {
    Tensor out;             // [B, S_local, H, Dv]
    Tensor replicated_out;  // [B, S_rep, H, Dv] or undefined
  };
  // q, k, v [B, S_local, H, D] (S_local = parallel().shard_length(full_length));
  // full_length = the unpadded global sequence length; rope (optional) is the
  // full-sequence table; replicated_* [B, S_rep, H, D] optional, the same on every rank,
  // get no rotary embedding. key_mask (optional, not with replicated tokens) is a Bool
  // [B, full_length], the same on every rank: keys where it is false are not attended.
  Output forward(const Tensor& q, const Tensor& k, const Tensor& v, int64_t full_length,
                 const RotaryTable* rope, ops::RopeStyle style, const Tensor& replicated_q = {},
                 const Tensor& replicated_k = {}, const Tensor& replicated_v = {},
                 const Tensor& key_mask = {}) const;

  // The optional parts of a self-attention call beyond those above.
  struct Extras {
    // The first isolated_prefix tokens of the full sequence attend only to each other (and
    // the rest to every token): LongCat's condition frames, which two attention calls over
    // the narrowed q/k/v give (no mask, so every kernel serves it).
    int64_t isolated_prefix = 0;
    // [B, S_extra, H, D] keys and values, the same on every rank, that every query outside
    // the isolated prefix attends to besides the sequence's own: a cache of earlier tokens
    // (LongCat's video continuation). They get no rotary embedding here: rotate them first.
    Tensor extra_k, extra_v;
  };
  Output forward(const Tensor& q, const Tensor& k, const Tensor& v, int64_t full_length, const RotaryTable* rope,
                 ops::RopeStyle style, const Extras& extras) const;

  const SequenceParallel& parallel() const { return *parallel_; }

 private:
  struct Inputs;
  Output split_heads(const Inputs& in) const;
  Output gather_keys(const Inputs& in) const;
  const SequenceParallel* parallel_;
};

class LocalAttention {
 public:
  // `op`: the name its kernels go by in a benchmark's per-op split ("cross_attention" for
  // attention to text or image tokens).
  explicit LocalAttention(const char* op = "attention") : op_(op) {}
  // q [B, Sq, H, D], k/v [B, Sk, Hkv, D] with Hkv dividing H (grouped K/V heads); rope
  // (optional) applies to q and k alike; key_mask (optional) is a Bool [B, Sk]: keys where
  // it is false are not attended.
  Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, const RotaryTable* rope = nullptr,
                 ops::RopeStyle style = ops::RopeStyle::Interleaved, const Tensor& key_mask = {}) const;
  // Sample b's queries attend to its first key_lengths[b] keys only (flash_attn_varlen_func
  // over packed keys, here padded to Sk): one call for the batch when every length is Sk,
  // else one per sample over its narrowed keys, so every kernel serves it without a mask; a
  // sample with no keys gets zeros. q [B, Sq, H, D], k/v [B, Sk, Hkv, D].
  Tensor forward_varlen(const Tensor& q, const Tensor& k, const Tensor& v, std::span<const int64_t> key_lengths) const;

 private:
  const char* op_;
};

}  // namespace fastdit::nn
