// The layers DiTs are built from. Module and parameter names follow diffusers so
// that state dicts and activation traces line up with the reference module by module.
#pragma once

#include <array>
#include <span>

#include "nn/module.h"
#include "ops/ops.h"

namespace fastdit::nn {

// y = x·Wᵀ + b with the full weight on every rank (weight [out, in], bias [out]).
class ReplicatedLinear : public Module {
 public:
  ReplicatedLinear(int64_t in_features, int64_t out_features, bool bias = true,
                   DTypePolicy policy = DTypePolicy::RunDType);
  Tensor forward(const Tensor& x) const;
  // forward of the parts joined along the last dim (their widths summing to in_features):
  // one projection over several streams' features, as Flux's single-stream proj_out over
  // cat([attention, mlp], dim=-1).
  Tensor forward_concat(std::span<const Tensor> parts) const;
  // gelu(forward(x)), fused into the GEMM where the backend can (ops::linear_gelu).
  Tensor forward_gelu(const Tensor& x, ops::GeluApprox approx) const;
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  // Lets a load with precision fp8 store the weight in FP8 (Parameter::fp8_capable); the
  // forward then runs ops::linear_fp8. Shapes cuBLASLt's FP8 GEMMs cannot take (in or out
  // features not multiples of 16) stay in the run dtype.
  void allow_fp8();
  Parameter* weight;
  Parameter* bias = nullptr;

 private:
  int64_t in_, out_;
};

// Marks every ReplicatedLinear of `subtree` (itself included) allow_fp8: how a model names
// the linears that go FP8 under precision fp8 — the attention projections and feed-forward
// layers of its transformer blocks — while embedders, modulation linears and output heads
// stay in the run dtype (DESIGN.md, precision).
void allow_fp8_linears(Module& subtree);

// Layer norm over the last dim with float32 statistics; returns the input dtype
// (diffusers FP32LayerNorm and nn.LayerNorm give the same numbers this way).
class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, float eps, bool elementwise_affine,
            DTypePolicy policy = DTypePolicy::RunDType);
  Tensor forward(const Tensor& x) const;
  // Without affine: layer_norm(x)·(1 + scale) + shift rounded once to out_dtype, in one
  // fused op (the unfused path runs when a hook wants this norm's own output).
  Tensor forward_modulated(const Tensor& x, const Tensor& shift, const Tensor& scale,
                           DType out_dtype) const;
  // The residual add in front of this norm: sum = residual + x (· gate) rounded to
  // residual's dtype, and normed = this norm of sum (modulated when shift and scale are
  // given, for a norm without affine), in residual's dtype. One fused op
  // (ops::add_layer_norm) unless a hook wants this norm's own output.
  ops::AddNorm add_and_forward(const Tensor& residual, const Tensor& x, const Tensor& gate,
                               const Tensor& shift = {}, const Tensor& scale = {}) const;
  Parameter* weight = nullptr;
  Parameter* bias = nullptr;

 private:
  float eps_;
};

// x·rsqrt(mean(x²)+eps)·weight, statistics in float32.
class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, float eps, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) const;
  // forward(x) in float32 · (1 + scale) + shift, rounded once to out_dtype
  // (ops::rms_norm_modulate), unless a hook wants this norm's own output. EachStep
  // (out_dtype = x's dtype): forward(x) as stored, then ops::modulate's rounded steps.
  Tensor forward_modulated(const Tensor& x, const Tensor& shift, const Tensor& scale, DType out_dtype,
                           ops::Rounding rounding = ops::Rounding::Once) const;
  float eps() const { return eps_; }
  Parameter* weight = nullptr;

 private:
  float eps_;
};

// SwiGLU halves its input: value · silu(gate) (ops::swiglu), for gated projections only.
enum class Activation { SiLU, GELU, GELUTanh, SwiGLU, Identity };
Activation parse_activation(std::string_view name);  // diffusers act_fn names
Tensor apply_activation(Activation act, const Tensor& x);

// A parameter-free activation module (nn.SiLU, nn.GELU, nn.Dropout at inference).
class ActivationModule : public Module {
 public:
  explicit ActivationModule(Activation act);
  Tensor forward(const Tensor& x) const { return emit(apply_activation(act_, x)); }

 private:
  Activation act_;
};

// diffusers GELU / SwiGLU: a projection followed by its activation (FeedForward's net.0).
// SwiGLU projects to 2·dim_out (value and gate) and returns dim_out.
class ActivationProjection : public Module {
 public:
  ActivationProjection(int64_t dim_in, int64_t dim_out, Activation act, bool bias = true);
  Tensor forward(const Tensor& x) const;
  ReplicatedLinear* proj;

 private:
  Activation act_;
};

// diffusers FeedForward: net.0 (GELU / SwiGLU projection), net.1 (dropout), net.2 (Linear).
class FeedForward : public Module {
 public:
  FeedForward(int64_t dim, int64_t inner_dim, int64_t dim_out, Activation act, bool bias = true);
  Tensor forward(const Tensor& x) const;
  // residual += forward(x) · gate (ops::gated_add_), residual a contiguous [B, L, D_out]
  // and x [B, L, D]; gate broadcasts against residual. With no hook watching the FFN it
  // runs over pieces of one batch item's tokens whose inner activation [tokens, inner_dim]
  // holds at most max_inner_per_item values (at least one token a piece), so the inner
  // activation never exists for the whole sequence: each token's row goes through the same
  // math, only the GEMMs' M shrinks. When a whole item fits, the batch runs at once (its
  // activation is then within B x max_inner_per_item).
  void add_gated_to(Tensor& residual, const Tensor& x, const Tensor& gate, int64_t max_inner_per_item) const;

 private:
  ActivationProjection* in_;
  ActivationModule* dropout_;
  ReplicatedLinear* out_;
};

// Linear → activation → Linear with the reference's child names: TimestepEmbedding
// (linear_1, act, linear_2), PixArtAlphaTextProjection (linear_1, act_1, linear_2) and an
// nn.Sequential of the three (0, 1, 2).
struct MLPNames {
  const char* first;
  const char* act;
  const char* second;
};
class ProjectionMLP : public Module {
 public:
  ProjectionMLP(std::string type_name, int64_t in_features, int64_t hidden, int64_t out_features,
                Activation act, MLPNames names, bool bias = true,
                DTypePolicy policy = DTypePolicy::RunDType);
  Tensor forward(const Tensor& x) const;
  ReplicatedLinear* linear_1;
  ReplicatedLinear* linear_2;

 private:
  ActivationModule* act_;
};
class TimestepEmbedding : public ProjectionMLP {
 public:
  TimestepEmbedding(int64_t in, int64_t dim, DTypePolicy policy = DTypePolicy::RunDType)
      : ProjectionMLP("TimestepEmbedding", in, dim, dim, Activation::SiLU, {"linear_1", "act", "linear_2"}, true,
                      policy) {}
};
class PixArtAlphaTextProjection : public ProjectionMLP {
 public:
  PixArtAlphaTextProjection(int64_t in, int64_t hidden, Activation act)
      : ProjectionMLP("PixArtAlphaTextProjection", in, hidden, hidden, act, {"linear_1", "act_1", "linear_2"}) {}
};
class SequentialMLP : public ProjectionMLP {
 public:
  SequentialMLP(int64_t in, int64_t hidden, int64_t out, Activation act, bool bias)
      : ProjectionMLP("Sequential", in, hidden, out, act, {"0", "1", "2"}, bias) {}
};

// diffusers Timesteps: sinusoidal embedding of scalar timesteps (float32 out).
class Timesteps : public Module {
 public:
  Timesteps(int64_t dim, bool flip_sin_to_cos, float downscale_freq_shift, float scale = 1.0f);
  Tensor forward(const Tensor& t) const;

 private:
  int64_t dim_;
  bool flip_;
  float shift_, scale_;
};

// Conv2d whose stride equals its kernel: [B, C, H, W] -> [B, O, H/kh, W/kw] (weight
// [O, C, kh, kw], diffusers' image patch projection).
class PatchEmbed2d : public Module {
 public:
  PatchEmbed2d(int64_t in_channels, int64_t out_channels, std::array<int64_t, 2> patch);
  Tensor forward(const Tensor& x) const;
  Parameter* weight;
  Parameter* bias;
};

// Conv1d with kernel 1 and no bias (weight [O, C, 1]): the same O x C matrix at every
// position. It runs on tokens, x [B, L, C] -> [B, L, O], the layout the model needs around
// it; hooks see the reference's [B, O, L] view of the result.
class PointwiseConv1d : public Module {
 public:
  PointwiseConv1d(int64_t in_channels, int64_t out_channels);
  Tensor forward_tokens(const Tensor& x) const;
  Parameter* weight;
};

// Conv3d whose stride equals its kernel: [B, C, T, H, W] -> [B, O, T/kt, H/kh, W/kw].
class PatchEmbed3d : public Module {
 public:
  PatchEmbed3d(int64_t in_channels, int64_t out_channels, std::array<int64_t, 3> patch);
  Tensor forward(const Tensor& x) const;
  Parameter* weight;
  Parameter* bias;
};

}  // namespace fastdit::nn
