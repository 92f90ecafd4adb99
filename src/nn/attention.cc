#include "nn/attention.h"

#include <array>

namespace fastdit::nn {

struct DistributedAttention::Inputs {
  const Tensor &q, &k, &v;
  int64_t full_length;
  const RotaryTable* rope;
  ops::RopeStyle style;
  const Tensor &replicated_q, &replicated_k, &replicated_v;
  const Tensor& key_mask;
  bool joint() const { return replicated_q.defined(); }
};

namespace {
Tensor rope_rows(const Tensor& x, const RotaryTable& table, int64_t first, ops::RopeStyle style) {
  const int64_t rows = x.size(1);
  return ops::rope(x, table.cos.narrow(0, first, rows), table.sin.narrow(0, first, rows), style);
}

Tensor join(const Tensor& main, const Tensor& replicated) {
  const Tensor parts[] = {main, replicated};
  return ops::concat(parts, 1);
}

// A Bool key mask [B, Sk] as the attention op's [B, 1, 1, Sk] (undefined stays undefined).
Tensor scores_mask(const Tensor& key_mask, const Tensor& q, const Tensor& k) {
  if (!key_mask.defined()) return {};
  FASTDIT_CHECK(key_mask.dtype() == DType::Bool && key_mask.dim() == 2 && key_mask.size(0) == q.size(0) &&
                    key_mask.size(1) == k.size(1),
                "attention: the key mask must be Bool [", q.size(0), ", ", k.size(1), "], got ",
                key_mask.str());
  return key_mask.reshape({key_mask.size(0), 1, 1, key_mask.size(1)});
}
}  // namespace

DistributedAttention::Output DistributedAttention::forward(
    const Tensor& q, const Tensor& k, const Tensor& v, int64_t full_length, const RotaryTable* rope,
    ops::RopeStyle style, const Tensor& replicated_q, const Tensor& replicated_k,
    const Tensor& replicated_v, const Tensor& key_mask) const {
  FASTDIT_CHECK(q.dim() == 4 && q.size(1) == parallel_->shard_length(full_length), "DistributedAttention: q ",
                q.str(), " is not a [B, S, H, D] shard of ", full_length, " tokens over ",
                parallel_->world_size(), " ranks");
  FASTDIT_CHECK(!rope || rope->cos.size(0) == full_length, "DistributedAttention: the rotary table has ",
                rope ? rope->cos.size(0) : 0, " rows for a sequence of ", full_length);
  FASTDIT_CHECK(!key_mask.defined() || !replicated_q.defined(),
                "DistributedAttention: a key mask with replicated tokens is not supported");
  FASTDIT_CHECK(k.size(2) == q.size(2), "DistributedAttention: q has ", q.size(2), " heads, k ", k.size(2),
                " (grouped K/V heads are for LocalAttention)");
  const Inputs in{q, k, v, full_length, rope, style, replicated_q, replicated_k, replicated_v, key_mask};
  return parallel_->splits_heads(q.size(2)) ? split_heads(in) : gather_keys(in);
}

// Ulysses: the whole sequence for H / P heads, then back to this rank's shard.
DistributedAttention::Output DistributedAttention::split_heads(const Inputs& in) const {
  const std::array<Tensor, 3> shards{in.q, in.k, in.v};
  auto full = parallel_->sequence_to_heads(shards, in.full_length);
  Tensor q = full[0], k = full[1], v = full[2];
  if (in.rope) {
    q = rope_rows(q, *in.rope, 0, in.style);
    k = rope_rows(k, *in.rope, 0, in.style);
  }
  if (in.joint()) {
    // This rank's heads of the replicated tokens, appended after the main tokens.
    const int64_t heads = q.size(2), first = parallel_->rank() * heads;
    q = join(q, in.replicated_q.narrow(2, first, heads));
    k = join(k, in.replicated_k.narrow(2, first, heads));
    v = join(v, in.replicated_v.narrow(2, first, heads));
  }
  Tensor attended = ops::attention(q, k, v, scores_mask(in.key_mask, q, k));
  Output output;
  if (in.joint()) {
    const int64_t replicated = in.replicated_q.size(1);
    output.replicated_out = parallel_->gather_heads(attended.narrow(1, in.full_length, replicated));
    attended = attended.narrow(1, 0, in.full_length);
  }
  output.out = parallel_->heads_to_sequence(attended);
  return output;
}

// Any head count: every rank gathers all keys and values and attends with its own
// queries (and, redundantly on every rank, the replicated tokens' queries).
DistributedAttention::Output DistributedAttention::gather_keys(const Inputs& in) const {
  const std::array<Tensor, 2> shards{in.k, in.v};
  auto full = parallel_->gather_sequence(shards, 1, in.full_length);
  const int64_t shard = in.q.size(1), valid = parallel_->valid_length(in.full_length);
  Tensor q = in.q.narrow(1, 0, valid), k = full[0], v = full[1];
  if (in.rope) {
    q = rope_rows(q, *in.rope, parallel_->rank() * shard, in.style);
    k = rope_rows(k, *in.rope, 0, in.style);
  }
  if (in.joint()) {
    q = join(q, in.replicated_q);
    k = join(k, in.replicated_k);
    v = join(v, in.replicated_v);
  }
  Output output;
  // A rank whose shard is all padding (a sequence shorter than the world) may have no queries.
  const Tensor attended = q.size(1) > 0 ? ops::attention(q, k, v, scores_mask(in.key_mask, q, k))
                                         : Tensor::zeros({q.size(0), 0, q.size(2), v.size(3)}, v.dtype(), v.device());
  if (in.joint()) output.replicated_out = attended.narrow(1, valid, in.replicated_q.size(1));
  output.out = pad_sequence(attended.narrow(1, 0, valid), 1, shard);
  return output;
}

Tensor LocalAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v, const RotaryTable* rope,
                               ops::RopeStyle style, const Tensor& key_mask) const {
  const Tensor mask = scores_mask(key_mask, q, k);
  if (!rope) return ops::attention(q, k, v, mask, 0.0f, op_);
  return ops::attention(ops::rope(q, rope->cos, rope->sin, style), ops::rope(k, rope->cos, rope->sin, style), v,
                        mask, 0.0f, op_);
}

}  // namespace fastdit::nn
