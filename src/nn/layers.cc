#include "nn/layers.h"

#include <algorithm>

namespace fastdit::nn {

namespace {
const Tensor& value_of(const Parameter* p) {
  FASTDIT_CHECK(p->value.defined(), "parameter used before it was loaded");
  return p->value;
}
const Tensor& optional_value(const Parameter* p) {
  static const Tensor none;
  return p ? value_of(p) : none;
}
}  // namespace

ReplicatedLinear::ReplicatedLinear(int64_t in_features, int64_t out_features, bool has_bias,
                                   DTypePolicy policy)
    : Module("ReplicatedLinear"), in_(in_features), out_(out_features) {
  weight = add_parameter("weight", {out_features, in_features}, policy);
  if (has_bias) bias = add_parameter("bias", {out_features}, policy);
}

Tensor ReplicatedLinear::forward(const Tensor& x) const {
  const Tensor& w = value_of(weight);
  if (weight->row_scales.defined()) return emit(ops::linear_fp8(x, w, weight->row_scales, optional_value(bias)));
  return emit(ops::linear(x, w, optional_value(bias)));
}

Tensor ReplicatedLinear::forward_gelu(const Tensor& x, ops::GeluApprox approx) const {
  const Tensor& w = value_of(weight);
  if (weight->row_scales.defined()) return ops::linear_fp8(x, w, weight->row_scales, optional_value(bias), approx);
  return ops::linear_gelu(x, w, optional_value(bias), approx);
}

void ReplicatedLinear::allow_fp8() { weight->fp8_capable = in_ % 16 == 0 && out_ % 16 == 0 && in_ > 0 && out_ > 0; }

void allow_fp8_linears(Module& subtree) {
  for (auto& [name, module] : subtree.named_modules()) {
    if (auto* linear = dynamic_cast<ReplicatedLinear*>(module)) linear->allow_fp8();
  }
}

Tensor ReplicatedLinear::forward_concat(std::span<const Tensor> parts) const {
  return forward(ops::concat(parts, -1));
}

LayerNorm::LayerNorm(int64_t dim, float eps, bool elementwise_affine, DTypePolicy policy)
    : Module("LayerNorm"), eps_(eps) {
  if (elementwise_affine) {
    weight = add_parameter("weight", {dim}, policy);
    bias = add_parameter("bias", {dim}, policy);
  }
}

Tensor LayerNorm::forward(const Tensor& x) const {
  return emit(ops::layer_norm(x, optional_value(weight), optional_value(bias), eps_));
}

Tensor LayerNorm::forward_modulated(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                   DType out_dtype) const {
  FASTDIT_CHECK(!weight, "forward_modulated is for layer norms without affine parameters");
  if (has_forward_hooks())
    return ops::modulate(forward(ops::cast(x, DType::Float32)), shift, scale, out_dtype);
  return ops::layer_norm_modulate(x, shift, scale, eps_, out_dtype);
}

ops::AddNorm LayerNorm::add_and_forward(const Tensor& residual, const Tensor& x, const Tensor& gate,
                                        const Tensor& shift, const Tensor& scale) const {
  const DType dtype = residual.dtype();
  if (has_forward_hooks()) {
    Tensor sum = gate.defined() ? ops::gated_add(residual, x, gate, dtype) : ops::cast(ops::add(residual, x), dtype);
    Tensor normed = shift.defined() ? forward_modulated(sum, shift, scale, dtype) : forward(sum);
    return {std::move(sum), std::move(normed)};
  }
  FASTDIT_CHECK(!shift.defined() || !weight, "add_and_forward modulates layer norms without affine parameters only");
  return ops::add_layer_norm(residual, x, gate, optional_value(weight), optional_value(bias), shift, scale, eps_);
}

RMSNorm::RMSNorm(int64_t dim, float eps, bool elementwise_affine) : Module("RMSNorm"), eps_(eps) {
  if (elementwise_affine) weight = add_parameter("weight", {dim});
}

Tensor RMSNorm::forward(const Tensor& x) const {
  return emit(ops::rms_norm(x, optional_value(weight), eps_));
}

Tensor RMSNorm::forward_modulated(const Tensor& x, const Tensor& shift, const Tensor& scale, DType out_dtype,
                                  ops::Rounding rounding) const {
  if (has_forward_hooks()) {
    if (rounding == ops::Rounding::EachStep) return ops::modulate(forward(x), shift, scale, out_dtype, rounding);
    return ops::modulate(forward(ops::cast(x, DType::Float32)), shift, scale, out_dtype);
  }
  return ops::rms_norm_modulate(x, optional_value(weight), shift, scale, eps_, out_dtype, rounding);
}

Activation parse_activation(std::string_view name) {
  if (name == "silu" || name == "swish") return Activation::SiLU;
  if (name == "gelu") return Activation::GELU;
  if (name == "gelu-approximate" || name == "gelu_tanh" || name == "gelu_pytorch_tanh")
    return Activation::GELUTanh;
  if (name == "swiglu") return Activation::SwiGLU;
  if (name == "identity" || name == "linear") return Activation::Identity;
  FASTDIT_FAIL("unknown activation '", name, "' (expected silu, gelu, gelu-approximate or swiglu)");
}

Tensor apply_activation(Activation act, const Tensor& x) {
  switch (act) {
    case Activation::SiLU: return ops::silu(x);
    case Activation::GELU: return ops::gelu(x, ops::GeluApprox::None);
    case Activation::GELUTanh: return ops::gelu(x, ops::GeluApprox::Tanh);
    case Activation::SwiGLU: return ops::swiglu(x);
    case Activation::Identity: return x;
  }
  return x;
}

namespace {
const char* activation_type_name(Activation act) {
  switch (act) {
    case Activation::SiLU: return "SiLU";
    case Activation::GELU:
    case Activation::GELUTanh: return "GELU";
    case Activation::SwiGLU: return "SwiGLU";
    case Activation::Identity: return "Dropout";
  }
  return "Activation";
}
}  // namespace

ActivationModule::ActivationModule(Activation act) : Module(activation_type_name(act)), act_(act) {}

ActivationProjection::ActivationProjection(int64_t dim_in, int64_t dim_out, Activation act, bool bias)
    : Module(act == Activation::SwiGLU ? "SwiGLU" : "GELU"), act_(act) {
  proj = add_module<ReplicatedLinear>("proj", dim_in, act == Activation::SwiGLU ? 2 * dim_out : dim_out, bias);
}

Tensor ActivationProjection::forward(const Tensor& x) const {
  const bool fusable = act_ == Activation::GELU || act_ == Activation::GELUTanh;
  if (!fusable || proj->has_forward_hooks()) return emit(apply_activation(act_, proj->forward(x)));
  const auto approx = act_ == Activation::GELUTanh ? ops::GeluApprox::Tanh : ops::GeluApprox::None;
  return emit(proj->forward_gelu(x, approx));
}

FeedForward::FeedForward(int64_t dim, int64_t inner_dim, int64_t dim_out, Activation act, bool bias)
    : Module("FeedForward") {
  auto* net = add_module<ModuleList>("net");
  in_ = net->append<ActivationProjection>(dim, inner_dim, act, bias);
  dropout_ = net->append<ActivationModule>(Activation::Identity);
  out_ = net->append<ReplicatedLinear>(inner_dim, dim_out, bias);
}

Tensor FeedForward::forward(const Tensor& x) const {
  return emit(out_->forward(dropout_->forward(in_->forward(x))));
}

void FeedForward::add_gated_to(Tensor& residual, const Tensor& x, const Tensor& gate,
                               int64_t max_inner_per_item) const {
  const int64_t max_tokens = std::max<int64_t>(1, max_inner_per_item / in_->proj->out_features());
  const bool hooked = has_forward_hooks() || in_->has_forward_hooks() || in_->proj->has_forward_hooks() ||
                      dropout_->has_forward_hooks() || out_->has_forward_hooks();
  const int64_t tokens = x.dim() == 3 ? x.size(1) : 0;
  if (hooked || tokens <= max_tokens || residual.dim() != 3 || residual.size(0) != x.size(0) ||
      residual.size(1) != tokens) {
    ops::gated_add_(residual, forward(x), gate);
    return;
  }
  const int64_t batch = x.size(0);
  const int64_t pieces = (tokens + max_tokens - 1) / max_tokens, step = (tokens + pieces - 1) / pieces;
  // The rows [start, start + length) of batch item b of a [B, L, ·] tensor; a gate that
  // broadcasts along the batch or the tokens keeps that dim whole.
  const auto rows = [&](const Tensor& t, int64_t b, int64_t start, int64_t length) {
    if (t.dim() != 3) return t;
    const Tensor item = t.size(0) == batch ? t.narrow(0, b, 1) : t;
    return item.size(1) == tokens ? item.narrow(1, start, length) : item;
  };
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t start = 0; start < tokens; start += step) {
      const int64_t length = std::min(step, tokens - start);
      Tensor target = rows(residual, b, start, length);
      ops::gated_add_(target, forward(rows(x, b, start, length)), rows(gate, b, start, length));
    }
  }
}

ProjectionMLP::ProjectionMLP(std::string type_name, int64_t in_features, int64_t hidden,
                             int64_t out_features, Activation act, MLPNames names, bool bias,
                             DTypePolicy policy)
    : Module(std::move(type_name)) {
  linear_1 = add_module<ReplicatedLinear>(names.first, in_features, hidden, bias, policy);
  act_ = add_module<ActivationModule>(names.act, act);
  linear_2 = add_module<ReplicatedLinear>(names.second, hidden, out_features, bias, policy);
}

Tensor ProjectionMLP::forward(const Tensor& x) const {
  return emit(linear_2->forward(act_->forward(linear_1->forward(x))));
}

Timesteps::Timesteps(int64_t dim, bool flip_sin_to_cos, float downscale_freq_shift, float scale)
    : Module("Timesteps"), dim_(dim), flip_(flip_sin_to_cos), shift_(downscale_freq_shift), scale_(scale) {}

Tensor Timesteps::forward(const Tensor& t) const {
  return emit(ops::timestep_embedding(t, dim_, flip_, shift_, scale_));
}

PatchEmbed2d::PatchEmbed2d(int64_t in_channels, int64_t out_channels, std::array<int64_t, 2> patch)
    : Module("Conv2d") {
  weight = add_parameter("weight", {out_channels, in_channels, patch[0], patch[1]});
  bias = add_parameter("bias", {out_channels});
}

Tensor PatchEmbed2d::forward(const Tensor& x) const {
  // A 2-D patch is a 3-D patch one frame deep.
  FASTDIT_CHECK(x.dim() == 4, "Conv2d patch embedding: expected [B, C, H, W], got ", x.str());
  return emit(ops::conv3d_patch(x.unsqueeze(2), value_of(weight).unsqueeze(2), value_of(bias)).squeeze(2));
}

PointwiseConv1d::PointwiseConv1d(int64_t in_channels, int64_t out_channels) : Module("Conv1d") {
  weight = add_parameter("weight", {out_channels, in_channels, 1});
}

Tensor PointwiseConv1d::forward_tokens(const Tensor& x) const {
  const Tensor& w = value_of(weight);
  const Tensor y = ops::linear(x, w.reshape({w.size(0), w.size(1)}));
  emit(y.transpose(1, 2));
  return y;
}

PatchEmbed3d::PatchEmbed3d(int64_t in_channels, int64_t out_channels, std::array<int64_t, 3> patch)
    : Module("Conv3d") {
  weight = add_parameter("weight", {out_channels, in_channels, patch[0], patch[1], patch[2]});
  bias = add_parameter("bias", {out_channels});
}

Tensor PatchEmbed3d::forward(const Tensor& x) const {
  return emit(ops::conv3d_patch(x, value_of(weight), value_of(bias)));
}

}  // namespace fastdit::nn
