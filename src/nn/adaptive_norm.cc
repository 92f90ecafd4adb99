#include "nn/adaptive_norm.h"

namespace fastdit::nn {

namespace {
// Chunk i of the [B, k·D] modulation vector as [B, 1, D] (a view).
Tensor chunk(const Tensor& e, int64_t i, int64_t chunks) {
  const int64_t d = e.size(1) / chunks;
  return e.narrow(1, i * d, d).unsqueeze(1);
}
}  // namespace

AdaLayerNormZero::AdaLayerNormZero(int64_t dim, bool dual_attention)
    : Module(dual_attention ? "SD35AdaLayerNormZeroX" : "AdaLayerNormZero"), dual_(dual_attention) {
  silu_ = add_module<ActivationModule>("silu", Activation::SiLU);
  linear_ = add_module<ReplicatedLinear>("linear", dim, (dual_attention ? 9 : 6) * dim);
  norm_ = add_module<LayerNorm>("norm", dim, 1e-6f, false);
}

AdaLayerNormZero::Output AdaLayerNormZero::forward(const Tensor& x, const Tensor& emb) const {
  const Tensor e = linear_->forward(silu_->forward(emb));
  const int64_t chunks = dual_ ? 9 : 6;
  Output out;
  out.gate_msa = chunk(e, 2, chunks);
  out.shift_mlp = chunk(e, 3, chunks);
  out.scale_mlp = chunk(e, 4, chunks);
  out.gate_mlp = chunk(e, 5, chunks);
  if (dual_) {
    // One norm(x) serves both modulations, as in the reference.
    const Tensor normed = norm_->forward(x);
    out.x = ops::modulate(normed, chunk(e, 0, chunks), chunk(e, 1, chunks), x.dtype());
    out.x2 = ops::modulate(normed, chunk(e, 6, chunks), chunk(e, 7, chunks), x.dtype());
    out.gate_msa2 = chunk(e, 8, chunks);
  } else {
    out.x = norm_->forward_modulated(x, chunk(e, 0, chunks), chunk(e, 1, chunks), x.dtype());
  }
  if (has_forward_hooks()) {
    // The reference's tuple: x, gate_msa, shift_mlp, scale_mlp, gate_mlp[, x2, gate_msa2],
    // its chunks [B, D].
    std::vector<Tensor> items{out.x, out.gate_msa.squeeze(1), out.shift_mlp.squeeze(1),
                              out.scale_mlp.squeeze(1), out.gate_mlp.squeeze(1)};
    if (dual_) items.insert(items.end(), {out.x2, out.gate_msa2.squeeze(1)});
    for (size_t i = 0; i < items.size(); ++i) emit(items[i], "out[" + std::to_string(i) + "]");
  }
  return out;
}

AdaLayerNormZeroSingle::AdaLayerNormZeroSingle(int64_t dim) : Module("AdaLayerNormZeroSingle") {
  silu_ = add_module<ActivationModule>("silu", Activation::SiLU);
  linear_ = add_module<ReplicatedLinear>("linear", dim, 3 * dim);
  norm_ = add_module<LayerNorm>("norm", dim, 1e-6f, false);
}

AdaLayerNormZeroSingle::Output AdaLayerNormZeroSingle::forward(const Tensor& x, const Tensor& emb) const {
  const Tensor e = linear_->forward(silu_->forward(emb));
  Output out{norm_->forward_modulated(x, chunk(e, 0, 3), chunk(e, 1, 3), x.dtype()), chunk(e, 2, 3)};
  if (has_forward_hooks()) {
    emit(out.x, "out[0]");
    emit(out.gate.squeeze(1), "out[1]");
  }
  return out;
}

AdaLayerNormContinuous::AdaLayerNormContinuous(int64_t dim, int64_t conditioning_dim, float eps)
    : Module("AdaLayerNormContinuous") {
  silu_ = add_module<ActivationModule>("silu", Activation::SiLU);
  linear_ = add_module<ReplicatedLinear>("linear", conditioning_dim, 2 * dim);
  norm_ = add_module<LayerNorm>("norm", dim, eps, false);
}

Tensor AdaLayerNormContinuous::forward(const Tensor& x, const Tensor& conditioning) const {
  const Tensor e = linear_->forward(ops::cast(silu_->forward(conditioning), x.dtype()));
  return emit(norm_->forward_modulated(x, chunk(e, 1, 2), chunk(e, 0, 2), x.dtype()));
}

}  // namespace fastdit::nn
