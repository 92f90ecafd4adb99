// Adaptive layer norms conditioned on an embedding (adaLN), with diffusers' module names
// (silu, linear, norm) and chunk orders. The chunk order is where ports go silently
// wrong, so each class spells it out.
#pragma once

#include "nn/layers.h"

namespace fastdit::nn {

// diffusers AdaLayerNormZero (SD3, Flux): linear(silu(emb)) -> 6 chunks
//   shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
// and x -> norm(x)·(1 + scale_msa) + shift_msa, norm a LayerNorm (eps 1e-6, no affine).
// With dual_attention it is SD35AdaLayerNormZeroX: 3 more chunks
//   shift_msa2, scale_msa2, gate_msa2
// modulate the same norm(x) a second time, for the second attention.
class AdaLayerNormZero : public Module {
 public:
  explicit AdaLayerNormZero(int64_t dim, bool dual_attention = false);
  struct Output {
    Tensor x;  // modulated, x's dtype
    // [B, 1, D] in emb's dtype, ready to broadcast over tokens.
    Tensor gate_msa, shift_mlp, scale_mlp, gate_mlp;
    Tensor x2, gate_msa2;  // dual attention only
  };
  // x [B, N, D], emb [B, D]. Outputs are traced as the reference's tuple (out.0 ...).
  Output forward(const Tensor& x, const Tensor& emb) const;

 private:
  bool dual_;
  ActivationModule* silu_;
  ReplicatedLinear* linear_;
  LayerNorm* norm_;
};

// diffusers AdaLayerNormZeroSingle (Flux single-stream blocks): linear(silu(emb)) -> 3 chunks
//   shift, scale, gate
// and x -> norm(x)·(1 + scale) + shift, norm a LayerNorm (eps 1e-6, no affine).
class AdaLayerNormZeroSingle : public Module {
 public:
  explicit AdaLayerNormZeroSingle(int64_t dim);
  struct Output {
    Tensor x;     // modulated, x's dtype
    Tensor gate;  // [B, 1, D] in emb's dtype
  };
  // x [B, N, D], emb [B, D]. Traced as the reference's tuple (x, gate).
  Output forward(const Tensor& x, const Tensor& emb) const;

 private:
  ActivationModule* silu_;
  ReplicatedLinear* linear_;
  LayerNorm* norm_;
};

// diffusers AdaLayerNormContinuous with a LayerNorm without affine (SD3 / Flux norm_out, the
// SD3 last block's context norm): linear(silu(c)) -> 2 chunks in the order scale, shift
// (scale first, unlike AdaLayerNormZero); x -> norm(x)·(1 + scale) + shift.
class AdaLayerNormContinuous : public Module {
 public:
  AdaLayerNormContinuous(int64_t dim, int64_t conditioning_dim, float eps);
  // x [B, N, D], conditioning [B, C] -> [B, N, D] in x's dtype.
  Tensor forward(const Tensor& x, const Tensor& conditioning) const;

 private:
  ActivationModule* silu_;
  ReplicatedLinear* linear_;
  LayerNorm* norm_;
};

}  // namespace fastdit::nn
