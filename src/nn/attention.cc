#include "nn/attention.h"

#include <algorithm>
#include <array>
#include <vector>

namespace fastdit::nn {

struct DistributedAttention::Inputs {
  const Tensor &q, &k, &v;
  int64_t full_length;
  const RotaryTable* rope;
  ops::RopeStyle style;
  const Tensor &replicated_q, &replicated_k, &replicated_v;
  const Tensor& key_mask;
  const DistributedAttention::Extras& extras;
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

Tensor join(const Tensor& main, const Tensor& extra, int64_t first_head) {
  if (!extra.defined()) return main;
  return join(main, extra.narrow(2, first_head, main.size(2)));
}

// Self-attention: the 8-bit kernel where the thread runs a quantized-attention forward
// (ops::quantized_attention, precision fp8) and it serves the call, else ops::attention.
Tensor self_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask = {}) {
  if (!mask.defined() && ops::quantized_attention() && ops::attention_8bit_refusal(q, k, v).empty())
    return ops::attention_8bit(q, k, v);
  return ops::attention(q, k, v, mask);
}

// Attention of q over k, v where query rows [0, prefix_q) see only keys [0, prefix_k) and
// the rest see every key and the extra keys (heads first_head... of them).
Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
              const DistributedAttention::Extras& extras, int64_t prefix_q, int64_t prefix_k, int64_t first_head) {
  const Tensor keys = join(k, extras.extra_k, first_head), values = join(v, extras.extra_v, first_head);
  if (extras.isolated_prefix == 0) return self_attention(q, keys, values, mask);
  FASTDIT_CHECK(!mask.defined(), "DistributedAttention: a key mask with an isolated prefix is not supported");
  std::vector<Tensor> parts;
  if (prefix_q > 0)
    parts.push_back(self_attention(q.narrow(1, 0, prefix_q), k.narrow(1, 0, prefix_k), v.narrow(1, 0, prefix_k)));
  if (prefix_q < q.size(1)) parts.push_back(self_attention(q.narrow(1, prefix_q, q.size(1) - prefix_q), keys, values));
  return parts.size() == 1 ? parts[0] : ops::concat(parts, 1);
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
  static const Extras kNone;
  const Inputs in{q, k, v, full_length, rope, style, replicated_q, replicated_k, replicated_v, key_mask, kNone};
  return parallel_->splits_heads(q.size(2)) ? split_heads(in) : gather_keys(in);
}

DistributedAttention::Output DistributedAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                                           int64_t full_length, const RotaryTable* rope,
                                                           ops::RopeStyle style, const Extras& extras) const {
  FASTDIT_CHECK(q.dim() == 4 && q.size(1) == parallel_->shard_length(full_length), "DistributedAttention: q ",
                q.str(), " is not a [B, S, H, D] shard of ", full_length, " tokens over ",
                parallel_->world_size(), " ranks");
  FASTDIT_CHECK(!rope || rope->cos.size(0) == full_length, "DistributedAttention: the rotary table has ",
                rope ? rope->cos.size(0) : 0, " rows for a sequence of ", full_length);
  FASTDIT_CHECK(extras.isolated_prefix >= 0 && extras.isolated_prefix <= full_length,
                "DistributedAttention: an isolated prefix of ", extras.isolated_prefix, " tokens in a sequence of ",
                full_length);
  FASTDIT_CHECK(extras.extra_k.defined() == extras.extra_v.defined(),
                "DistributedAttention: extra keys and values come together");
  if (extras.extra_k.defined())
    FASTDIT_CHECK(extras.extra_k.dim() == 4 && extras.extra_k.size(0) == q.size(0) &&
                      extras.extra_k.size(2) == q.size(2) && extras.extra_k.size(3) == k.size(3) &&
                      extras.extra_v.dim() == 4 && extras.extra_v.size(1) == extras.extra_k.size(1),
                  "DistributedAttention: extra keys ", extras.extra_k.str(), " and values ", extras.extra_v.str(),
                  " must be [", q.size(0), ", S, ", q.size(2), ", D] for q ", q.str());
  static const Tensor kNoTensor;
  const Inputs in{q, k, v, full_length, rope, style, kNoTensor, kNoTensor, kNoTensor, kNoTensor, extras};
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
  const int64_t heads = q.size(2), prefix = in.extras.isolated_prefix;
  Tensor attended = attend(q, k, v, scores_mask(in.key_mask, q, k), in.extras, prefix, prefix,
                           parallel_->rank() * heads);
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
  // This rank's queries are rows [rank * shard, rank * shard + valid) of the sequence.
  const int64_t prefix = in.extras.isolated_prefix;
  const int64_t local_prefix = std::clamp<int64_t>(prefix - parallel_->rank() * shard, 0, valid);
  const Tensor attended = q.size(1) > 0 ? attend(q, k, v, scores_mask(in.key_mask, q, k), in.extras, local_prefix,
                                                 prefix, 0)
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

Tensor LocalAttention::forward_varlen(const Tensor& q, const Tensor& k, const Tensor& v,
                                      std::span<const int64_t> key_lengths) const {
  FASTDIT_CHECK(static_cast<int64_t>(key_lengths.size()) == q.size(0) && k.size(0) == q.size(0),
                "attention: ", key_lengths.size(), " key lengths for q ", q.str(), " and k ", k.str());
  const int64_t keys = k.size(1);
  bool full = true;
  for (const int64_t length : key_lengths) {
    FASTDIT_CHECK(length >= 0 && length <= keys, "attention: a key length of ", length, " for ", keys, " keys");
    full = full && length == keys;
  }
  if (full) return ops::attention(q, k, v, {}, 0.0f, op_);
  std::vector<Tensor> samples;
  for (int64_t b = 0; b < q.size(0); ++b) {
    const Tensor qb = q.narrow(0, b, 1);
    const int64_t length = key_lengths[static_cast<size_t>(b)];
    samples.push_back(length == 0 ? Tensor::zeros({1, q.size(1), q.size(2), v.size(3)}, q.dtype(), q.device())
                                  : ops::attention(qb, k.narrow(0, b, 1).narrow(1, 0, length),
                                                   v.narrow(0, b, 1).narrow(1, 0, length), {}, 0.0f, op_));
  }
  return ops::concat(samples, 0);
}

}  // namespace fastdit::nn
