#include "models/dits/ltx2.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

namespace fastdit::ltx2 {

using ops::cast;

namespace {
constexpr float kAttentionNormEps = 1e-6f;  // LTX2Attention's norm_eps: the block never passes norm_eps
constexpr float kOutputNormEps = 1e-6f;

// get_mod_params: table [k, D] + emb [B, T, k·D] viewed [B, T, k, D], as k tensors [B, T, D]
// in the stream's dtype (the reference's bf16 add). The add writes [k, B, T, D] (its input
// read through a permuted view), so each parameter is a contiguous view of the one result:
// one kernel, no copy per parameter (with B·T = 1 the view needs no copy either).
std::vector<Tensor> mod_params(const Tensor& table, const Tensor& emb) {
  const int64_t k = table.size(0), d = table.size(1), b = emb.size(0), t = emb.size(1);
  const Tensor values = ops::add(table.reshape({k, 1, 1, d}), emb.reshape({b, t, k, d}).permute({2, 0, 1, 3}));
  std::vector<Tensor> out;
  for (int64_t i = 0; i < k; ++i) out.push_back(values.narrow(0, i, 1).squeeze(0));
  return out;
}

// Additive text / self-attention bias (1 − m)·(−10000) from a [B, S] or [B, N, N] mask, each
// step in dtype as the reference computes it (m cast to the hidden dtype first). `one` is a
// 1 in dtype on the mask's device (made before any CUDA graph capture: no upload inside one).
Tensor additive_bias(const Tensor& mask, DType dtype, const Tensor& one) {
  return ops::scale(ops::sub(one, cast(mask, dtype)), -10000.0f);
}

Tensor merged(const Tensor& t) { return t.reshape({t.size(0), t.size(1), -1}); }

// The reference's modulation and gated residuals, x·(1 + scale) + shift and x + y·gate, are
// separate ops in the stream's dtype, each rounding to it. Here each is one pass that rounds
// every step as those ops do (ops::Rounding::EachStep): the same numbers, so a bf16 run drifts
// from the float32 one as the reference's does.
Tensor modulate(const Tensor& x, const Tensor& shift, const Tensor& scale) {
  return ops::modulate(x, shift, scale, x.dtype(), ops::Rounding::EachStep);
}

// norm(x) modulated with the reference's rounded steps (the norm stored in x's dtype, then
// each step of the modulation), in one fused pass.
Tensor norm_modulate(const nn::RMSNorm& norm, const Tensor& x, const Tensor& shift, const Tensor& scale) {
  return norm.forward_modulated(x, shift, scale, x.dtype(), ops::Rounding::EachStep);
}

Tensor gated_residual(const Tensor& x, const Tensor& y, const Tensor& gate) {
  return ops::gated_add(x, y, gate, x.dtype(), ops::Rounding::EachStep);
}

// The residual update (gated when gate is given) and the norm after it, modulated when shift
// and scale are given: one pass (ops::add_layer_norm with each step rounded, the same numbers)
// unless a hook wants the norm's own output.
ops::AddNorm add_norm(const nn::RMSNorm& norm, const Tensor& residual, const Tensor& y, const Tensor& gate,
                      const Tensor& shift = {}, const Tensor& scale = {}) {
  if (norm.has_forward_hooks() || (norm.weight && shift.defined())) {
    Tensor sum = gate.defined() ? gated_residual(residual, y, gate) : cast(ops::add(residual, y), residual.dtype());
    Tensor normed = shift.defined() ? norm_modulate(norm, sum, shift, scale) : norm.forward(sum);
    return {std::move(sum), std::move(normed)};
  }
  return ops::add_layer_norm(residual, y, gate, norm.weight ? norm.weight->value : Tensor{}, {}, shift, scale,
                             norm.eps(), ops::NormKind::Rms, ops::Rounding::EachStep);
}
}  // namespace

// ---- timestep embeddings -------------------------------------------------------------

CombinedTimestepEmbedding::CombinedTimestepEmbedding(int64_t dim)
    : Module("PixArtAlphaCombinedTimestepSizeEmbeddings") {
  time_proj_ = add_module<nn::Timesteps>("time_proj", 256, true, 0.0f);
  timestep_embedder_ = add_module<nn::TimestepEmbedding>("timestep_embedder", 256, dim);
}

Tensor CombinedTimestepEmbedding::forward(const Tensor& t, DType dtype) const {
  return emit(timestep_embedder_->forward(cast(time_proj_->forward(t), dtype)));
}

AdaLayerNormSingle::AdaLayerNormSingle(int64_t dim, int64_t count) : Module("LTX2AdaLayerNormSingle") {
  emb_ = add_module<CombinedTimestepEmbedding>("emb", dim);
  silu_ = add_module<nn::ActivationModule>("silu", nn::Activation::SiLU);
  linear_ = add_module<nn::ReplicatedLinear>("linear", dim, count * dim);
}

AdaLayerNormSingle::Output AdaLayerNormSingle::forward(const Tensor& t, DType dtype) const {
  Output out;
  out.embedded = emb_->forward(t, dtype);
  out.modulation = linear_->forward(silu_->forward(out.embedded));
  emit(out.modulation, "out[0]");
  emit(out.embedded, "out[1]");
  return out;
}

// ---- attention -----------------------------------------------------------------------

Ltx2Attention::Ltx2Attention(int64_t query_dim, int64_t kv_dim, int64_t heads, int64_t head_dim, bool bias,
                             bool out_bias, bool gated, bool self_attention, const BuildOptions& options)
    : Module("LTX2Attention"), heads_(heads), head_dim_(head_dim), distributed_(options.sequence_parallel) {
  const int64_t inner = heads * head_dim;
  FASTDIT_CHECK(!self_attention || kv_dim == query_dim, "LTX2Attention: a self-attention reads one width, got query ",
                query_dim, " and key/value ", kv_dim);
  norm_q_ = add_module<nn::RMSNorm>("norm_q", inner, kAttentionNormEps);
  norm_k_ = add_module<nn::RMSNorm>("norm_k", inner, kAttentionNormEps);
  const bool fuse = options.fuse_projections;
  if (fuse && self_attention) {
    to_qkv_ = add_module<nn::ReplicatedLinear>("to_qkv", query_dim, 3 * inner, bias);
  } else {
    to_q_ = add_module<nn::ReplicatedLinear>("to_q", query_dim, inner, bias);
    if (fuse) {
      to_kv_ = add_module<nn::ReplicatedLinear>("to_kv", kv_dim, 2 * inner, bias);
    } else {
      to_k_ = add_module<nn::ReplicatedLinear>("to_k", kv_dim, inner, bias);
      to_v_ = add_module<nn::ReplicatedLinear>("to_v", kv_dim, inner, bias);
    }
  }
  auto* to_out = add_module<nn::ModuleList>("to_out");
  to_out_ = to_out->append<nn::ReplicatedLinear>(inner, query_dim, out_bias);
  out_dropout_ = to_out->append<nn::ActivationModule>(nn::Activation::Identity);
  if (gated) to_gate_logits_ = add_module<nn::ReplicatedLinear>("to_gate_logits", query_dim, heads, true);
  // Under precision fp8: q, k, v (separate or fused) and out (every LTX-2 attention sits in a
  // block); the per-head gate is a sliver of a GEMM that scales whole heads, so it stays in
  // the run dtype.
  for (nn::ReplicatedLinear* projection : {to_q_, to_k_, to_v_, to_qkv_, to_kv_, to_out_})
    if (projection) projection->allow_fp8();
}

Ltx2Attention::Projections Ltx2Attention::project(const Tensor& x, const Tensor& context, bool values_only) const {
  const int64_t inner = heads_ * head_dim_;
  const Tensor& kv_input = context.defined() ? context : x;
  Projections p;
  if (to_qkv_) {  // one GEMM; with values_only its q and k columns go unread (STG blocks only)
    FASTDIT_CHECK(!context.defined(), "LTX2Attention: the fused q|k|v projection is a self-attention's, given a ",
                  "context ", context.str());
    const Tensor qkv = to_qkv_->forward(x);
    p.v = qkv.narrow(-1, 2 * inner, inner);
    if (!values_only) {
      p.q = qkv.narrow(-1, 0, inner);
      p.k = qkv.narrow(-1, inner, inner);
    }
    return p;
  }
  if (to_kv_) {
    const Tensor kv = to_kv_->forward(kv_input);
    p.v = kv.narrow(-1, inner, inner);
    if (!values_only) p.k = kv.narrow(-1, 0, inner);
  } else {
    p.v = to_v_->forward(kv_input);
    if (!values_only) p.k = to_k_->forward(kv_input);
  }
  if (!values_only) p.q = to_q_->forward(x);
  return p;
}

// Whether the fused q|k|v output goes through ops::qkv_norm_rope: a self-attention whose
// table rotates whole heads of its own count, with no hook wanting a norm's own output.
bool Ltx2Attention::one_pass_norm_rope(bool values_only, const Rope& rope) const {
  if (!to_qkv_ || values_only || !rope.table || !norm_q_->weight || !norm_k_->weight) return false;
  if (norm_q_->has_forward_hooks() || norm_k_->has_forward_hooks()) return false;
  const Tensor& cos = rope.table->cos;
  return cos.dim() == 4 && cos.size(2) == heads_ && cos.size(3) == head_dim_;
}

// The flat projection [B, S, inner] rotated as the table's heads see it (apply_*_rotary_emb).
Tensor Ltx2Attention::rotate(const Tensor& t, const Rope& rope) const {
  if (!rope.table) return t;
  const int64_t rope_heads = rope.table->cos.size(2);
  const Tensor rotated = ops::rope(t.reshape({t.size(0), t.size(1), rope_heads, -1}), rope.table->cos,
                                   rope.table->sin, rope.style);
  return merged(rotated);
}

Tensor Ltx2Attention::forward(const Tensor& x, const Tensor& context, const Tensor& mask, const Rope& q_rope,
                              const Rope& k_rope, const Perturbation& perturbation, bool distributed,
                              int64_t full_length) const {
  const auto heads = [&](const Tensor& t) { return t.reshape({t.size(0), t.size(1), heads_, head_dim_}); };
  const bool values_only = perturbation.active && perturbation.all_perturbed;
  Tensor q, k, value;  // q, k rotated; value flat [B, S, inner] (a column view when fused)
  if (!context.defined() && one_pass_norm_rope(values_only, q_rope)) {
    // The fused self-attention projection to normalised, rotated heads in one pass
    // (ops::qkv_norm_rope: the numbers of the norms and rotations below).
    ops::QKV r = ops::qkv_norm_rope(to_qkv_->forward(x), norm_q_->weight->value, norm_k_->weight->value,
                                    norm_q_->eps(), heads_, q_rope.table->cos, q_rope.table->sin, q_rope.style);
    q = std::move(r.q);
    k = std::move(r.k);
    value = merged(r.v);
  } else {
    Projections p = project(x, context, values_only);
    value = std::move(p.v);
    if (!values_only) {  // the norms read the fused output's column ranges in place
      q = rotate(norm_q_->forward(std::exchange(p.q, {})), q_rope);
      k = rotate(norm_k_->forward(std::exchange(p.k, {})), k_rope.table ? k_rope : q_rope);
    }
  }
  Tensor out;
  if (values_only) {
    out = value.contiguous();  // STG everywhere: the values stand in for the attention
  } else {
    if (distributed) {
      out = distributed_.forward(heads(q), heads(k), heads(value), full_length, nullptr, q_rope.style).out;
    } else {
      out = ops::attention(heads(q), heads(k), heads(value), mask, 0.0f,
                           context.defined() ? "cross_attention" : "attention");
    }
    out = merged(out);
    if (perturbation.active && perturbation.mask.defined()) {  // torch.lerp(value, out, mask)
      const Tensor start = cast(value, DType::Float32);
      out = cast(ops::gated_add(start, ops::sub(cast(out, DType::Float32), start), perturbation.mask), x.dtype());
    }
  }
  if (to_gate_logits_) {  // out_head · 2·sigmoid(logits), each step in the stream's dtype
    const Tensor gates = ops::scale(ops::sigmoid(to_gate_logits_->forward(x)), 2.0f);
    out = merged(ops::mul(heads(out), gates.unsqueeze(-1)));
  }
  return emit(out_dropout_->forward(to_out_->forward(out)));
}

// ---- block ---------------------------------------------------------------------------

Ltx2Block::Ltx2Block(const Ltx2ArchConfig& c, const BuildOptions& options)
    : Module("LTX2VideoTransformerBlock"),
      config_(c),
      parallel_(options.sequence_parallel ? *options.sequence_parallel : nn::single_process()) {
  const int64_t d = c.hidden_size, da = c.audio_hidden_size;
  const int64_t h = c.num_attention_heads, dh = c.attention_head_dim;
  const int64_t ha = c.audio_num_attention_heads, dha = c.audio_attention_head_dim;
  const auto eps = static_cast<float>(c.norm_eps);
  const bool affine = c.norm_elementwise_affine;
  const bool bias = c.attention_bias, out_bias = c.attention_out_bias;
  norm1_ = add_module<nn::RMSNorm>("norm1", d, eps, affine);
  attn1_ = add_module<Ltx2Attention>("attn1", d, d, h, dh, bias, out_bias, c.gated_attn, true, options);
  audio_norm1_ = add_module<nn::RMSNorm>("audio_norm1", da, eps, affine);
  audio_attn1_ =
      add_module<Ltx2Attention>("audio_attn1", da, da, ha, dha, bias, out_bias, c.audio_gated_attn, true, options);
  norm2_ = add_module<nn::RMSNorm>("norm2", d, eps, affine);
  attn2_ =
      add_module<Ltx2Attention>("attn2", d, c.cross_attention_dim, h, dh, bias, out_bias, c.gated_attn, false, options);
  audio_norm2_ = add_module<nn::RMSNorm>("audio_norm2", da, eps, affine);
  audio_attn2_ = add_module<Ltx2Attention>("audio_attn2", da, c.audio_cross_attention_dim, ha, dha, bias, out_bias,
                                           c.audio_gated_attn, false, options);
  audio_to_video_norm_ = add_module<nn::RMSNorm>("audio_to_video_norm", d, eps, affine);
  audio_to_video_attn_ =
      add_module<Ltx2Attention>("audio_to_video_attn", d, da, ha, dha, bias, out_bias, c.gated_attn, false, options);
  video_to_audio_norm_ = add_module<nn::RMSNorm>("video_to_audio_norm", da, eps, affine);
  video_to_audio_attn_ =
      add_module<Ltx2Attention>("video_to_audio_attn", da, d, ha, dha, bias, out_bias, c.audio_gated_attn, false,
                                options);
  const nn::Activation act = c.activation_fn == "gelu" ? nn::Activation::GELU : nn::Activation::GELUTanh;
  norm3_ = add_module<nn::RMSNorm>("norm3", d, eps, affine);
  ff_ = add_module<nn::FeedForward>("ff", d, 4 * d, d, act, c.ff_bias);
  audio_norm3_ = add_module<nn::RMSNorm>("audio_norm3", da, eps, affine);
  audio_ff_ = add_module<nn::FeedForward>("audio_ff", da, 4 * da, da, act, c.audio_ff_bias);
  nn::allow_fp8_linears(*ff_);  // under precision fp8, with the attentions' projections
  nn::allow_fp8_linears(*audio_ff_);
  scale_shift_table_ = add_parameter("scale_shift_table", {c.cross_attn_mod ? 9 : 6, d});
  audio_scale_shift_table_ = add_parameter("audio_scale_shift_table", {c.audio_cross_attn_mod ? 9 : 6, da});
  if (c.prompt_modulation()) {
    prompt_scale_shift_table_ = add_parameter("prompt_scale_shift_table", {2, d});
    audio_prompt_scale_shift_table_ = add_parameter("audio_prompt_scale_shift_table", {2, da});
  }
  video_a2v_table_ = add_parameter("video_a2v_cross_attn_scale_shift_table", {5, d});
  audio_a2v_table_ = add_parameter("audio_a2v_cross_attn_scale_shift_table", {5, da});
}

std::pair<Tensor, Tensor> Ltx2Block::forward(const Tensor& video, const Tensor& audio, const BlockContext& ctx,
                                             const Perturbation& perturbation) const {
  const Ltx2ArchConfig& c = config_;
  const DType dtype = video.dtype();
  Tensor x = video, a = audio;

  // 1. self-attention of each stream (shift, scale, gate, then the FFN's three; 2.3 appends
  // the text query's shift, scale, gate)
  const std::vector<Tensor> v_ada = mod_params(scale_shift_table_->value, ctx.temb);
  const std::vector<Tensor> a_ada = mod_params(audio_scale_shift_table_->value, ctx.temb_audio);
  const bool distributed = !ctx.video_self_mask.defined();  // a mask is refused under SP
  Tensor v_self = attn1_->forward(norm_modulate(*norm1_, x, v_ada[0], v_ada[1]), {}, ctx.video_self_mask,
                                  ctx.video_rope, {}, perturbation, distributed, ctx.video_tokens);
  ops::AddNorm video_step = add_norm(*norm2_, x, std::exchange(v_self, {}), v_ada[2]);
  x = video_step.sum;
  ops::AddNorm audio_step = add_norm(*audio_norm2_, a,
                                     audio_attn1_->forward(norm_modulate(*audio_norm1_, a, a_ada[0], a_ada[1]), {},
                                                           {}, ctx.audio_rope, {}, perturbation),
                                     a_ada[2]);
  a = audio_step.sum;

  // 2. cross-attention to each stream's text; 2.3 modulates the query, the text (shift, scale
  // from the prompt table) and gates the output
  Tensor text = ctx.text, audio_text = ctx.audio_text;
  if (c.prompt_modulation()) {
    const auto prompt = [&](const nn::Parameter* table, const Tensor& temb) {
      if (temb.defined()) return mod_params(table->value, temb);
      const Tensor rows = cast(table->value, dtype);  // use_prompt_adaln_single false: the static table
      return std::vector<Tensor>{rows.narrow(0, 0, 1), rows.narrow(0, 1, 1)};  // contiguous row views
    };
    const std::vector<Tensor> kv = prompt(prompt_scale_shift_table_, ctx.temb_prompt);
    const std::vector<Tensor> audio_kv = prompt(audio_prompt_scale_shift_table_, ctx.temb_prompt_audio);
    text = modulate(text, kv[0], kv[1]);
    audio_text = modulate(audio_text, audio_kv[0], audio_kv[1]);
  }
  Tensor q_in = video_step.normed;
  if (c.cross_attn_mod) q_in = modulate(q_in, v_ada[6], v_ada[7]);
  Tensor v_text = attn2_->forward(q_in, text, ctx.text_mask, {}, {});
  if (c.cross_attn_mod) v_text = ops::mul(v_text, v_ada[8]);
  Tensor aq_in = audio_step.normed;
  if (c.audio_cross_attn_mod) aq_in = modulate(aq_in, a_ada[6], a_ada[7]);
  Tensor a_text = audio_attn2_->forward(aq_in, audio_text, ctx.audio_text_mask, {}, {});
  if (c.audio_cross_attn_mod) a_text = ops::mul(a_text, a_ada[8]);
  video_step = {};
  audio_step = {};

  // 3. A2V and V2A, both from the norms of the streams before either update; the per-layer
  // tables' rows 0-3 are (a2v scale, a2v shift, v2a scale, v2a shift), scale first, row 4 the gate.
  // Each residual add runs fused with the norm after it.
  Tensor v_residual, v_gate, a_residual, a_gate;  // the update in front of the FFN's norm
  if (!ctx.cross_modal) {
    v_residual = v_text;
    a_residual = a_text;
  } else {
    video_step = add_norm(*audio_to_video_norm_, x, std::exchange(v_text, {}), {});
    audio_step = add_norm(*video_to_audio_norm_, a, std::exchange(a_text, {}), {});
    x = video_step.sum;
    a = audio_step.sum;
    const Tensor n_v = video_step.normed, n_a = audio_step.normed;
    const Tensor v_table = video_a2v_table_->value, a_table = audio_a2v_table_->value;
    // (row ranges of a table are contiguous views: nothing copied)
    const std::vector<Tensor> v_ca = mod_params(v_table.narrow(0, 0, 4), ctx.temb_ca_scale_shift);
    const Tensor a2v_gate = mod_params(v_table.narrow(0, 4, 1), ctx.temb_ca_gate)[0];
    const std::vector<Tensor> a_ca = mod_params(a_table.narrow(0, 0, 4), ctx.temb_ca_audio_scale_shift);
    const Tensor v2a_gate = mod_params(a_table.narrow(0, 4, 1), ctx.temb_ca_audio_gate)[0];

    const Tensor a2v_q = modulate(n_v, v_ca[1], v_ca[0]);
    const Tensor a2v_kv = modulate(n_a, a_ca[1], a_ca[0]);
    const Tensor a2v = audio_to_video_attn_->forward(a2v_q, a2v_kv, {}, ctx.ca_video_rope, ctx.ca_audio_rope);

    const Tensor v2a_q = modulate(n_a, a_ca[3], a_ca[2]);
    // The audio queries attend to every video token: gather this rank's keys' input.
    const Tensor v2a_kv =
        parallel_.gather_sequence(modulate(n_v, v_ca[3], v_ca[2]), 1, ctx.video_tokens);
    const Tensor v2a = video_to_audio_attn_->forward(v2a_q, v2a_kv, {}, ctx.ca_audio_rope, ctx.ca_video_rope_full);

    v_residual = a2v;
    v_gate = a2v_gate;
    a_residual = v2a;
    a_gate = v2a_gate;
  }

  // 4. feed-forward, its modulated norm fused with the update before it
  // (each input dropped once used: the FFN's hidden state never meets the stream's old copy)
  video_step = add_norm(*norm3_, x, v_residual, v_gate, v_ada[3], v_ada[4]);
  audio_step = add_norm(*audio_norm3_, a, a_residual, a_gate, a_ada[3], a_ada[4]);
  x = std::move(video_step.sum);
  a = std::move(audio_step.sum);
  v_residual = a_residual = {};
  x = gated_residual(x, ff_->forward(std::exchange(video_step.normed, {})), v_ada[5]);
  a = gated_residual(a, audio_ff_->forward(std::exchange(audio_step.normed, {})), a_ada[5]);
  emit(x, "out[0]");
  emit(a, "out[1]");
  return {x, a};
}

// ---- model ---------------------------------------------------------------------------

LTX2VideoTransformer3DModel::LTX2VideoTransformer3DModel(Ltx2ArchConfig config, const BuildOptions& options)
    : DiTModel("LTX2VideoTransformer3DModel"),
      config_(std::move(config)),
      mapping_(ltx2_mapping()),
      parallel_(options.sequence_parallel ? *options.sequence_parallel : nn::single_process()),
      rope_style_(config_.rope_type == "split" ? ops::RopeStyle::SplitHalf : ops::RopeStyle::Interleaved) {
  if (options.fuse_projections) mapping_.then(fused_projection_mapping());
  const auto& c = config_;
  const int64_t d = c.hidden_size, da = c.audio_hidden_size;
  // Own parameters first, in the reference's registration order (its state dict's order).
  if (c.use_keyframes_abs_pos_embedding) keyframes_abs_pos_embedding_ = add_parameter("keyframes_abs_pos_embedding", {1, d});
  scale_shift_table_ = add_parameter("scale_shift_table", {2, d});
  audio_scale_shift_table_ = add_parameter("audio_scale_shift_table", {2, da});
  proj_in_ = add_module<nn::ReplicatedLinear>("proj_in", c.in_channels, d);
  audio_proj_in_ = add_module<nn::ReplicatedLinear>("audio_proj_in", c.audio_in_channels, da);
  if (c.use_prompt_embeddings) {
    caption_projection_ =
        add_module<nn::PixArtAlphaTextProjection>("caption_projection", c.caption_channels, d, nn::Activation::GELUTanh);
    audio_caption_projection_ = add_module<nn::PixArtAlphaTextProjection>(
        "audio_caption_projection", c.caption_channels, da, nn::Activation::GELUTanh);
  }
  time_embed_ = add_module<AdaLayerNormSingle>("time_embed", d, c.cross_attn_mod ? 9 : 6);
  audio_time_embed_ = add_module<AdaLayerNormSingle>("audio_time_embed", da, c.audio_cross_attn_mod ? 9 : 6);
  av_cross_attn_video_scale_shift_ = add_module<AdaLayerNormSingle>("av_cross_attn_video_scale_shift", d, 4);
  av_cross_attn_audio_scale_shift_ = add_module<AdaLayerNormSingle>("av_cross_attn_audio_scale_shift", da, 4);
  av_cross_attn_video_a2v_gate_ = add_module<AdaLayerNormSingle>("av_cross_attn_video_a2v_gate", d, 1);
  av_cross_attn_audio_v2a_gate_ = add_module<AdaLayerNormSingle>("av_cross_attn_audio_v2a_gate", da, 1);
  if (c.prompt_modulation() && c.use_prompt_adaln_single) {
    prompt_adaln_ = add_module<AdaLayerNormSingle>("prompt_adaln", d, 2);
    audio_prompt_adaln_ = add_module<AdaLayerNormSingle>("audio_prompt_adaln", da, 2);
  }
  transformer_blocks_ = add_module<nn::ModuleList>("transformer_blocks");
  for (int64_t i = 0; i < c.num_layers; ++i) transformer_blocks_->append<Ltx2Block>(config_, options);
  norm_out_ = add_module<nn::LayerNorm>("norm_out", d, kOutputNormEps, false);
  proj_out_ = add_module<nn::ReplicatedLinear>("proj_out", d, c.out_channels);
  audio_norm_out_ = add_module<nn::LayerNorm>("audio_norm_out", da, kOutputNormEps, false);
  audio_proj_out_ = add_module<nn::ReplicatedLinear>("audio_proj_out", da, c.audio_out_channels);
}

ModelIO LTX2VideoTransformer3DModel::io() const {
  ModelIO io;
  const auto num = ElementKind::Number;
  io.tensors = {{"hidden_states", {3}, ElementKind::Floating, true, InputRole::Latents},
                {"audio_hidden_states", {3}, ElementKind::Floating, true, InputRole::Other},
                {"encoder_hidden_states", {3}, ElementKind::Floating, true, InputRole::TextEmbeddings},
                {"audio_encoder_hidden_states", {3}, ElementKind::Floating, true, InputRole::Other},
                {"timestep", {1, 2}, num, true, InputRole::Timestep},
                {"audio_timestep", {1, 2}, num, false},
                {"sigma", {1}, num, false},
                {"audio_sigma", {1}, num, false},
                {"encoder_attention_mask", {2}, num, false},
                {"audio_encoder_attention_mask", {2}, num, false},
                {"video_coords", {4}, num, false},
                {"audio_coords", {4}, num, false},
                {"perturbation_mask", {1, 3}, num, false},
                {"video_self_attention_mask", {3}, num, false}};
  io.args = {{"num_frames", ArgType::Int, std::nullopt},
             {"height", ArgType::Int, std::nullopt},
             {"width", ArgType::Int, std::nullopt},
             {"fps", ArgType::Float, ArgValue(24.0)},
             {"audio_num_frames", ArgType::Int, std::nullopt},
             {"isolate_modalities", ArgType::Bool, ArgValue(false)},
             {"spatio_temporal_guidance_blocks", ArgType::IntList, std::nullopt},
             {"use_cross_timestep", ArgType::Bool, ArgValue(false)}};
  io.outputs = {"sample", "audio_sample"};
  return io;
}

// ---- positions -----------------------------------------------------------------------

// prepare_video_coords' patch midpoints [1, 3, N]: time [start, end) in latent frames ·
// the VAE's time factor, shifted by causal_offset − factor and clamped at 0, over fps;
// height and width in pixels. Float32, as the reference computes them.
Tensor LTX2VideoTransformer3DModel::video_coordinates(int64_t frames, int64_t height, int64_t width,
                                                      double fps) const {
  const auto& c = config_;
  const int64_t pt = c.patch_size_t, p = c.patch_size;
  const int64_t nf = (frames + pt - 1) / pt, nh = (height + p - 1) / p, nw = (width + p - 1) / p;
  const int64_t n = nf * nh * nw;
  std::vector<float> out(static_cast<size_t>(3 * n));
  const auto mid = [](float start, float end) { return (start + end) / 2.0f; };
  const auto time = [&](float latent) {
    float pixel = latent * static_cast<float>(c.vae_scale_factors[0]);
    pixel = std::max(pixel + static_cast<float>(c.causal_offset) - static_cast<float>(c.vae_scale_factors[0]), 0.0f);
    return pixel / static_cast<float>(fps);
  };
  for (int64_t f = 0; f < nf; ++f)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t w = 0; w < nw; ++w) {
        const int64_t t = (f * nh + h) * nw + w;
        const auto start = [&](int64_t i, int64_t step) { return static_cast<float>(i * step); };
        out[t] = mid(time(start(f, pt)), time(start(f, pt) + static_cast<float>(pt)));
        const float sh = static_cast<float>(c.vae_scale_factors[1]), sw = static_cast<float>(c.vae_scale_factors[2]);
        out[n + t] = mid(start(h, p) * sh, (start(h, p) + static_cast<float>(p)) * sh);
        out[2 * n + t] = mid(start(w, p) * sw, (start(w, p) + static_cast<float>(p)) * sw);
      }
  return Tensor::from_vector(out, {1, 3, n});
}

// prepare_audio_coords' midpoints [1, 1, N] in seconds: latent frame i spans mel frames
// [i·s + offset − s, (i + pt)·s + offset − s) clamped at 0, times hop / sampling rate.
Tensor LTX2VideoTransformer3DModel::audio_coordinates(int64_t frames) const {
  const auto& c = config_;
  const int64_t pt = c.audio_patch_size_t;
  const int64_t n = (frames + pt - 1) / pt;
  const auto s = static_cast<float>(c.audio_scale_factor);
  const auto seconds = [&](float latent) {
    const float mel = std::max(latent * s + static_cast<float>(c.causal_offset) - s, 0.0f);
    return mel * static_cast<float>(c.audio_hop_length) / static_cast<float>(c.audio_sampling_rate);
  };
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto start = static_cast<float>(i * pt);
    out[i] = (seconds(start) + seconds(start + static_cast<float>(pt))) / 2.0f;
  }
  return Tensor::from_vector(out, {1, 1, n});
}

const Tensor& LTX2VideoTransformer3DModel::one(DType dtype, Device device) const {
  auto [it, added] = ones_.try_emplace({dtype, device.type, device.index});
  if (added) it->second = cast(Tensor::scalar(1.0f), dtype).to(device);
  return it->second;
}

LTX2VideoTransformer3DModel::Tables LTX2VideoTransformer3DModel::build_tables(const Tensor& video_coords,
                                                                              const Tensor& audio_coords,
                                                                              Device device) const {
  const auto& c = config_;
  const double theta = c.rope_theta;
  const auto precision = c.rope_double_precision ? nn::AnglePrecision::Float64 : nn::AnglePrecision::Float32;
  const float video_max[] = {static_cast<float>(c.pos_embed_max_pos), static_cast<float>(c.base_height),
                             static_cast<float>(c.base_width)};
  const float audio_max[] = {static_cast<float>(c.audio_pos_embed_max_pos)};
  const float cross_max[] = {static_cast<float>(std::max(c.pos_embed_max_pos, c.audio_pos_embed_max_pos))};
  const Tensor video_time = video_coords.narrow(1, 0, 1).contiguous();
  Tables t;
  t.video = nn::rotary_coordinate_table(video_coords, video_max, c.hidden_size, c.num_attention_heads, theta,
                                        rope_style_, precision);
  t.audio = nn::rotary_coordinate_table(audio_coords, audio_max, c.audio_hidden_size, c.audio_num_attention_heads,
                                        theta, rope_style_, precision);
  t.ca_video = nn::rotary_coordinate_table(video_time, cross_max, c.audio_cross_attention_dim, c.num_attention_heads,
                                           theta, rope_style_, precision);
  t.ca_audio = nn::rotary_coordinate_table(audio_coords, cross_max, c.audio_cross_attention_dim,
                                           c.audio_num_attention_heads, theta, rope_style_, precision);
  for (nn::RotaryTable* table : {&t.video, &t.audio, &t.ca_video, &t.ca_audio}) {
    table->cos = table->cos.to(device);
    table->sin = table->sin.to(device);
  }
  if (parallel_.world_size() > 1) {  // this rank's rows of the video tables
    for (nn::RotaryTable* table : {&t.video, &t.ca_video}) {
      table->shard_cos = parallel_.shard_sequence(table->cos, 1);
      table->shard_sin = parallel_.shard_sequence(table->sin, 1);
    }
  }
  return t;
}

const LTX2VideoTransformer3DModel::Tables& LTX2VideoTransformer3DModel::computed_tables(
    int64_t frames, int64_t height, int64_t width, double fps, int64_t audio_frames, Device device) const {
  const TableKey key{frames, height, width, fps, audio_frames, device.type, device.index};
  auto found = cached_tables_.find(key);
  if (found == cached_tables_.end())
    found = cached_tables_
                .emplace(key, build_tables(video_coordinates(frames, height, width, fps), audio_coordinates(audio_frames),
                                           device))
                .first;
  return found->second;
}

// ---- forward -------------------------------------------------------------------------

namespace {
// [start, end) pairs [B, axes, N, 2] -> midpoints [B, axes, N] float32.
Tensor midpoints(const Tensor& coords, const char* name, int64_t axes, int64_t batch, int64_t tokens) {
  FASTDIT_CHECK(coords.dim() == 4 && coords.size(0) == batch && coords.size(1) == axes && coords.size(2) == tokens &&
                    coords.size(3) == 2,
                name, " must be [", batch, ", ", axes, ", ", tokens, ", 2] ([start, end) per axis), got ", coords.str());
  const Tensor c = cast(coords.to(Device::cpu()), DType::Float32).contiguous();
  const float* p = c.data<float>();
  std::vector<float> out(static_cast<size_t>(batch * axes * tokens));
  for (size_t i = 0; i < out.size(); ++i) out[i] = (p[2 * i] + p[2 * i + 1]) / 2.0f;
  return Tensor::from_vector(out, {batch, axes, tokens});
}

Tensor float_timestep(const Tensor& t) { return cast(t, DType::Float32); }

// A [B] or [B, T] timestep checked against the batch and the stream's token count.
void check_timestep(const Tensor& t, const char* name, int64_t batch, int64_t tokens) {
  const bool fits = (t.dim() == 1 && t.size(0) == batch) ||
                    (t.dim() == 2 && t.size(0) == batch && (t.size(1) == 1 || t.size(1) == tokens));
  FASTDIT_CHECK(fits, name, " must be [", batch, "] or per token [", batch, ", ", tokens, "], got ", t.str());
}
}  // namespace

TensorMap LTX2VideoTransformer3DModel::run(const TensorMap& inputs, const ArgMap& args) {
  const auto& c = config_;
  const Tensor& latents = input_or_none(inputs, "hidden_states");
  const Tensor& audio_latents = input_or_none(inputs, "audio_hidden_states");
  const Tensor& text_in = input_or_none(inputs, "encoder_hidden_states");
  const Tensor& audio_text_in = input_or_none(inputs, "audio_encoder_hidden_states");
  const Tensor& timestep = input_or_none(inputs, "timestep");
  const int64_t batch = latents.size(0), n_v = latents.size(1), n_a = audio_latents.size(1);
  FASTDIT_CHECK(latents.size(2) == c.in_channels && n_v > 0, "hidden_states must be [B, N, ", c.in_channels,
                "] (packed video latents), got ", latents.str());
  FASTDIT_CHECK(audio_latents.size(0) == batch && audio_latents.size(2) == c.audio_in_channels && n_a > 0,
                "audio_hidden_states must be [", batch, ", N_a, ", c.audio_in_channels, "], got ", audio_latents.str());
  const int64_t text_width = c.use_prompt_embeddings ? c.caption_channels : c.cross_attention_dim;
  const int64_t audio_text_width = c.use_prompt_embeddings ? c.caption_channels : c.audio_cross_attention_dim;
  FASTDIT_CHECK(text_in.size(0) == batch && text_in.size(2) == text_width && text_in.size(1) > 0,
                "encoder_hidden_states must be [", batch, ", S, ", text_width, "], got ", text_in.str());
  FASTDIT_CHECK(audio_text_in.size(0) == batch && audio_text_in.size(2) == audio_text_width &&
                    audio_text_in.size(1) > 0,
                "audio_encoder_hidden_states must be [", batch, ", S, ", audio_text_width, "], got ",
                audio_text_in.str());
  const Tensor& audio_timestep_in = input_or_none(inputs, "audio_timestep");
  const Tensor& audio_timestep = audio_timestep_in.defined() ? audio_timestep_in : timestep;
  check_timestep(timestep, "timestep", batch, n_v);
  check_timestep(audio_timestep, audio_timestep_in.defined() ? "audio_timestep" : "timestep (as the audio timestep)",
                 batch, n_a);
  const Tensor& sigma = input_or_none(inputs, "sigma");
  const Tensor& audio_sigma_in = input_or_none(inputs, "audio_sigma");
  const Tensor& audio_sigma = audio_sigma_in.defined() ? audio_sigma_in : sigma;
  const bool cross_timestep = arg_bool(args, "use_cross_timestep");
  const bool prompt_adaln = prompt_adaln_ != nullptr;
  FASTDIT_CHECK(!(cross_timestep || prompt_adaln) || (sigma.defined() && sigma.size(0) == batch &&
                                                      audio_sigma.size(0) == batch),
                "sigma [", batch, "] is required with use_cross_timestep or the prompt modulation (cross_attn_mod)");

  const Device device = latents.device();
  const DType dtype = proj_in_->weight->value.dtype();

  // 1. rotary tables: from the coordinates given, or computed from the grid sizes
  const Tensor& video_coords_in = input_or_none(inputs, "video_coords");
  const Tensor& audio_coords_in = input_or_none(inputs, "audio_coords");
  Tables given;
  const Tables* tables = nullptr;
  if (video_coords_in.defined() || audio_coords_in.defined()) {
    FASTDIT_CHECK(video_coords_in.defined() && audio_coords_in.defined(),
                  "give both video_coords and audio_coords, or neither");
    given = build_tables(midpoints(video_coords_in, "video_coords", 3, batch, n_v),
                         midpoints(audio_coords_in, "audio_coords", 1, batch, n_a), device);
    tables = &given;
  } else {
    const auto grid = [&](const char* name) {
      FASTDIT_CHECK(args.count(name), "LTX2VideoTransformer3DModel needs the argument ", name,
                    " (or video_coords and audio_coords) to place its tokens");
      return arg_int(args, name);
    };
    const int64_t frames = grid("num_frames"), height = grid("height"), width = grid("width");
    const int64_t audio_frames = grid("audio_num_frames");
    const int64_t pt = c.patch_size_t, p = c.patch_size;
    FASTDIT_CHECK(((frames + pt - 1) / pt) * ((height + p - 1) / p) * ((width + p - 1) / p) == n_v,
                  "num_frames x height x width = ", frames, " x ", height, " x ", width, " does not give the ", n_v,
                  " video tokens of hidden_states");
    FASTDIT_CHECK((audio_frames + c.audio_patch_size_t - 1) / c.audio_patch_size_t == n_a, "audio_num_frames ",
                  audio_frames, " does not give the ", n_a, " audio tokens of audio_hidden_states");
    tables = &computed_tables(frames, height, width, arg_float(args, "fps"), audio_frames, device);
  }
  const bool sharded = parallel_.world_size() > 1;
  const auto local_rows = [&](const nn::RotaryTable& t, nn::RotaryTable& holder) {
    if (!sharded) return &t;
    holder = {t.shard_cos, t.shard_sin, {}, {}};
    return static_cast<const nn::RotaryTable*>(&holder);
  };
  nn::RotaryTable video_rows, ca_video_rows;

  BlockContext ctx;
  ctx.video_tokens = n_v;
  ctx.video_rope = {local_rows(tables->video, video_rows), rope_style_};
  ctx.audio_rope = {&tables->audio, rope_style_};
  ctx.ca_video_rope = {local_rows(tables->ca_video, ca_video_rows), rope_style_};
  ctx.ca_video_rope_full = {&tables->ca_video, rope_style_};
  ctx.ca_audio_rope = {&tables->ca_audio, rope_style_};
  ctx.cross_modal = !arg_bool(args, "isolate_modalities");

  // masks as additive biases in the hidden dtype
  const auto text_bias = [&](const char* name, int64_t tokens) -> Tensor {
    const Tensor& mask = input_or_none(inputs, name);
    if (!mask.defined()) return {};
    FASTDIT_CHECK(mask.size(0) == batch && mask.size(1) == tokens, name, " must be [", batch, ", ", tokens, "], got ",
                  mask.str());
    return additive_bias(mask, dtype, one(dtype, device)).reshape({batch, 1, 1, tokens});
  };
  ctx.text_mask = text_bias("encoder_attention_mask", text_in.size(1));
  ctx.audio_text_mask = text_bias("audio_encoder_attention_mask", audio_text_in.size(1));
  if (const Tensor& m = input_or_none(inputs, "video_self_attention_mask"); m.defined()) {
    FASTDIT_CHECK(m.size(0) == batch && m.size(1) == n_v && m.size(2) == n_v, "video_self_attention_mask must be [",
                  batch, ", ", n_v, ", ", n_v, "], got ", m.str());
    FASTDIT_CHECK(!sharded, "video_self_attention_mask is not supported under sequence parallelism");
    ctx.video_self_mask = additive_bias(m, dtype, one(dtype, device)).unsqueeze(1);
  }

  // 2. input projections; 3. timestep embeddings [B, T, k·D]
  const auto per_item = [&](const Tensor& t) { return t.reshape({batch, -1, t.size(-1)}); };
  const auto shard_tokens = [&](const Tensor& t) {  // per-token video modulation follows the shard
    return sharded && t.size(1) == n_v && n_v > 1 ? parallel_.shard_sequence(t, 1) : t;
  };
  const Tensor t_video = float_timestep(timestep).reshape({-1});
  const Tensor t_audio = float_timestep(audio_timestep).reshape({-1});
  const AdaLayerNormSingle::Output video_time = time_embed_->forward(t_video, dtype);
  const AdaLayerNormSingle::Output audio_time = audio_time_embed_->forward(t_audio, dtype);
  ctx.temb = shard_tokens(per_item(video_time.modulation));
  ctx.temb_audio = per_item(audio_time.modulation);
  if (prompt_adaln) {
    ctx.temb_prompt = per_item(prompt_adaln_->forward(float_timestep(sigma).reshape({-1}), dtype).modulation);
    ctx.temb_prompt_audio =
        per_item(audio_prompt_adaln_->forward(float_timestep(audio_sigma).reshape({-1}), dtype).modulation);
  }
  const auto gate_factor = static_cast<float>(c.cross_attn_timestep_scale_multiplier / c.timestep_scale_multiplier);
  const Tensor video_ca_t = cross_timestep ? float_timestep(audio_sigma).reshape({-1}) : t_video;
  const Tensor audio_ca_t = cross_timestep ? float_timestep(sigma).reshape({-1}) : t_audio;
  ctx.temb_ca_scale_shift = shard_tokens(per_item(av_cross_attn_video_scale_shift_->forward(video_ca_t, dtype).modulation));
  ctx.temb_ca_gate =
      shard_tokens(per_item(av_cross_attn_video_a2v_gate_->forward(ops::scale(video_ca_t, gate_factor), dtype).modulation));
  ctx.temb_ca_audio_scale_shift = per_item(av_cross_attn_audio_scale_shift_->forward(audio_ca_t, dtype).modulation);
  ctx.temb_ca_audio_gate =
      per_item(av_cross_attn_audio_v2a_gate_->forward(ops::scale(audio_ca_t, gate_factor), dtype).modulation);

  // 4. captions (2.0); 2.3 hands over text at the model's widths
  ctx.text = caption_projection_ ? caption_projection_->forward(cast(text_in, dtype)) : cast(text_in, dtype);
  ctx.audio_text =
      audio_caption_projection_ ? audio_caption_projection_->forward(cast(audio_text_in, dtype)) : cast(audio_text_in, dtype);

  Tensor x = parallel_.shard_sequence(proj_in_->forward(cast(latents, dtype)), 1);
  Tensor a = audio_proj_in_->forward(cast(audio_latents, dtype));

  // 5. blocks, with STG in the listed ones
  const auto stg = arg_int_list(args, "spatio_temporal_guidance_blocks");
  const std::set<int64_t> stg_blocks = stg ? std::set<int64_t>(stg->begin(), stg->end()) : std::set<int64_t>{};
  Perturbation perturbed;
  perturbed.active = c.perturbed_attn && !stg_blocks.empty();
  if (perturbed.active) {
    const Tensor& mask = input_or_none(inputs, "perturbation_mask");
    if (!mask.defined()) {
      perturbed.all_perturbed = true;
    } else {
      FASTDIT_CHECK(mask.size(0) == batch && mask.numel() == batch, "perturbation_mask must be [", batch, "] or [",
                    batch, ", 1, 1], got ", mask.str());
      const std::vector<float> values = cast(mask.to(Device::cpu()), DType::Float32).to_float_vector();
      perturbed.all_perturbed = std::all_of(values.begin(), values.end(), [](float v) { return v == 0.0f; });
      perturbed.mask = cast(mask, DType::Float32).reshape({batch, 1, 1});
    }
  }
  for (size_t i = 0; i < transformer_blocks_->size(); ++i) {
    const bool stg_here = stg_blocks.count(static_cast<int64_t>(i)) > 0;
    std::tie(x, a) = transformer_blocks_->at<Ltx2Block>(i)->forward(x, a, ctx, stg_here ? perturbed : Perturbation{});
  }
  x = parallel_.gather_sequence(x, 1, n_v);

  // 6. output heads: shift = table row 0 + embedded, scale = row 1 + embedded
  const auto head = [&](const Tensor& h, const nn::Parameter* table, const Tensor& embedded, const nn::LayerNorm* norm,
                        const nn::ReplicatedLinear* proj) {
    const std::vector<Tensor> ss = mod_params(table->value, ops::concat(std::vector<Tensor>{embedded, embedded}, -1));
    return proj->forward(modulate(norm->forward(h), ss[0], ss[1]));
  };
  Tensor sample = head(x, scale_shift_table_, per_item(video_time.embedded), norm_out_, proj_out_);
  Tensor audio_sample = head(a, audio_scale_shift_table_, per_item(audio_time.embedded), audio_norm_out_, audio_proj_out_);
  return {{"sample", sample}, {"audio_sample", audio_sample}};
}

TensorMap LTX2VideoTransformer3DModel::example_inputs(const ExampleShape& s, uint64_t seed) const {
  const auto& c = config_;
  const int64_t n_v = s.frames * s.height * s.width;
  const int64_t audio_frames = arg_int(example_args(s), "audio_num_frames");
  const int64_t text_width = c.use_prompt_embeddings ? c.caption_channels : c.cross_attention_dim;
  const int64_t audio_text_width = c.use_prompt_embeddings ? c.caption_channels : c.audio_cross_attention_dim;
  TensorMap inputs;
  inputs["hidden_states"] = ops::random_uniform({s.batch, n_v, c.in_channels}, DType::Float32, seed, -1.0f, 1.0f);
  inputs["audio_hidden_states"] =
      ops::random_uniform({s.batch, audio_frames, c.audio_in_channels}, DType::Float32, seed + 1, -1.0f, 1.0f);
  inputs["encoder_hidden_states"] =
      ops::random_uniform({s.batch, s.text_len, text_width}, DType::Float32, seed + 2, -1.0f, 1.0f);
  inputs["audio_encoder_hidden_states"] =
      ops::random_uniform({s.batch, s.text_len, audio_text_width}, DType::Float32, seed + 3, -1.0f, 1.0f);
  inputs["timestep"] = ops::random_uniform({s.batch}, DType::Float32, seed + 4, 0.0f, 1000.0f);
  if (prompt_adaln_) inputs["sigma"] = ops::random_uniform({s.batch}, DType::Float32, seed + 5, 0.0f, 1.0f);
  return inputs;
}

// LTX2Pipeline's grid: latent frames F = 1 + (frames − 1)/8 at fps 24, and the audio latents
// of the same duration, round(frames / fps · sampling_rate / hop / audio_scale_factor).
ArgMap LTX2VideoTransformer3DModel::example_args(const ExampleShape& s) const {
  const auto& c = config_;
  const double fps = 24.0;
  const double pixel_frames = static_cast<double>((s.frames - 1) * c.vae_scale_factors[0] + 1);
  const double per_second = static_cast<double>(c.audio_sampling_rate) / static_cast<double>(c.audio_hop_length) /
                            static_cast<double>(c.audio_scale_factor);
  const auto audio_frames = static_cast<int64_t>(std::llround(pixel_frames / fps * per_second));
  return {{"num_frames", s.frames}, {"height", s.height}, {"width", s.width}, {"fps", fps},
          {"audio_num_frames", std::max<int64_t>(audio_frames, 1)}};
}

// ---- checkpoint layouts --------------------------------------------------------------

ParamNameMapping ltx2_mapping() {
  ParamNameMapping m;
  const std::string top = R"(^model\.diffusion_model\.)";
  m.ignore(top + R"((video|audio)_embeddings_connector\..*)", "the text connectors run outside the DiT");
  // Whole-prefix renames of the top-level modules (longest original names first: adaln_single
  // is a substring of the others).
  const std::pair<const char*, const char*> modules[] = {
      {"av_ca_video_scale_shift_adaln_single", "av_cross_attn_video_scale_shift"},
      {"av_ca_a2v_gate_adaln_single", "av_cross_attn_video_a2v_gate"},
      {"av_ca_audio_scale_shift_adaln_single", "av_cross_attn_audio_scale_shift"},
      {"av_ca_v2a_gate_adaln_single", "av_cross_attn_audio_v2a_gate"},
      {"audio_prompt_adaln_single", "audio_prompt_adaln"},
      {"prompt_adaln_single", "prompt_adaln"},
      {"audio_adaln_single", "audio_time_embed"},
      {"adaln_single", "time_embed"},
      {"audio_patchify_proj", "audio_proj_in"},
      {"patchify_proj", "proj_in"}};
  for (const auto& [original, native] : modules)
    m.rename(top + original + R"(\.(.+)$)", std::string(native) + ".$1");
  const std::string block = top + R"(transformer_blocks\.(\d+)\.)";
  m.rename(block + R"(scale_shift_table_a2v_ca_(video|audio)$)", "transformer_blocks.$1.$2_a2v_cross_attn_scale_shift_table");
  m.rename(block + R"((\w+)\.q_norm\.weight$)", "transformer_blocks.$1.$2.norm_q.weight");
  m.rename(block + R"((\w+)\.k_norm\.weight$)", "transformer_blocks.$1.$2.norm_k.weight");
  m.rename(block + R"((\w+)\.to_gate_compress\.(weight|bias)$)", "transformer_blocks.$1.$2.to_gate_logits.$3");
  m.rename(top + R"((.+)$)", "$1");
  return m;
}

ParamNameMapping fused_projection_mapping() {
  ParamNameMapping m;
  const std::string self = R"(^(transformer_blocks\.\d+\.(?:attn1|audio_attn1))\.to_)";
  const std::string cross =
      R"(^(transformer_blocks\.\d+\.(?:attn2|audio_attn2|audio_to_video_attn|video_to_audio_attn))\.to_)";
  const std::string wb = R"(\.(weight|bias)$)";
  m.merge(self + "q" + wb, "$1.to_qkv.$2", 0, 3);
  m.merge(self + "k" + wb, "$1.to_qkv.$2", 1, 3);
  m.merge(self + "v" + wb, "$1.to_qkv.$2", 2, 3);
  m.merge(cross + "k" + wb, "$1.to_kv.$2", 0, 2);
  m.merge(cross + "v" + wb, "$1.to_kv.$2", 1, 2);
  return m;
}

void register_models() {
  register_dit("LTX2VideoTransformer3DModel", [](ConfigReader& config, const BuildOptions& options) {
    return std::make_unique<LTX2VideoTransformer3DModel>(Ltx2ArchConfig::from_reader(config), options);
  });
}

}  // namespace fastdit::ltx2
