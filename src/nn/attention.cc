#include "nn/attention.h"

namespace fastdit::nn {

namespace {
class SingleProcess final : public SequenceParallel {
 public:
  int world_size() const override { return 1; }
  int rank() const override { return 0; }
  std::vector<Tensor> sequence_to_heads(const std::vector<Tensor>& shards, int64_t full_length) const override {
    std::vector<Tensor> out;
    for (const auto& t : shards) out.push_back(t.size(1) == full_length ? t : t.narrow(1, 0, full_length));
    return out;
  }
  Tensor heads_to_sequence(const Tensor& full, int64_t local_length) const override {
    FASTDIT_CHECK(local_length >= full.size(1), "heads_to_sequence: local length ", local_length,
                  " shorter than the sequence ", full.size(1));
    if (local_length == full.size(1)) return full;
    Shape pad = full.shape();
    pad[1] = local_length - full.size(1);
    const Tensor parts[] = {full, Tensor::zeros(pad, full.dtype(), full.device())};
    return ops::concat(parts, 1);
  }
  Tensor gather_heads(const Tensor& part) const override { return part; }
};
}  // namespace

const SequenceParallel& single_process() {
  static const SingleProcess instance;
  return instance;
}

DistributedAttention::Output DistributedAttention::forward(
    const Tensor& q, const Tensor& k, const Tensor& v, int64_t full_length, const RotaryTable* rope,
    ops::RopeStyle style, const Tensor& replicated_q, const Tensor& replicated_k,
    const Tensor& replicated_v) const {
  const int64_t local_length = q.size(1);
  auto full = parallel_->sequence_to_heads({q, k, v}, full_length);
  Tensor fq = full[0], fk = full[1], fv = full[2];
  if (rope) {
    fq = ops::rope(fq, rope->cos, rope->sin, style);
    fk = ops::rope(fk, rope->cos, rope->sin, style);
  }
  const bool joint = replicated_q.defined();
  if (joint) {
    // This rank's heads of the replicated tokens, appended after the main tokens.
    const int64_t heads = fq.size(2), first = parallel_->rank() * heads;
    auto mine = [&](const Tensor& t) { return t.narrow(2, first, heads); };
    const Tensor qs[] = {fq, mine(replicated_q)}, ks[] = {fk, mine(replicated_k)}, vs[] = {fv, mine(replicated_v)};
    fq = ops::concat(qs, 1);
    fk = ops::concat(ks, 1);
    fv = ops::concat(vs, 1);
  }
  Tensor attended = ops::attention(fq, fk, fv);
  Output output;
  if (joint) {
    const int64_t rep = replicated_q.size(1);
    output.replicated_out = parallel_->gather_heads(attended.narrow(1, full_length, rep).contiguous());
    attended = attended.narrow(1, 0, full_length).contiguous();
  }
  output.out = parallel_->heads_to_sequence(attended, local_length);
  return output;
}

Tensor LocalAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v, const RotaryTable* rope,
                               ops::RopeStyle style) const {
  if (!rope) return ops::attention(q, k, v);
  return ops::attention(ops::rope(q, rope->cos, rope->sin, style), ops::rope(k, rope->cos, rope->sin, style), v);
}

}  // namespace fastdit::nn
