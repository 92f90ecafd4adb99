#include "models/dits/sd3.h"

#include <algorithm>

namespace fastdit::sd3 {

using ops::cast;

// ---- attention -----------------------------------------------------------------------

SD3Attention::SD3Attention(const SD3ArchConfig& c, bool joint, bool context_pre_only, const BuildOptions& options)
    : Module("Attention"), num_heads_(c.num_attention_heads), attention_(options.sequence_parallel) {
  const int64_t d = c.hidden_size, dh = c.attention_head_dim;
  const bool fuse = options.fuse_projections;
  constexpr float kEps = 1e-6f;
  // Declared in the reference's order, so the parameter list matches its state dict.
  if (c.qk_norm) {
    norm_q_ = add_module<nn::RMSNorm>("norm_q", dh, kEps);
    norm_k_ = add_module<nn::RMSNorm>("norm_k", dh, kEps);
  }
  if (fuse) {
    to_qkv_ = add_module<nn::ReplicatedLinear>("to_qkv", d, 3 * d);
  } else {
    to_q_k_v_ = {add_module<nn::ReplicatedLinear>("to_q", d, d), add_module<nn::ReplicatedLinear>("to_k", d, d),
                 add_module<nn::ReplicatedLinear>("to_v", d, d)};
  }
  if (joint && fuse) {
    to_added_qkv_ = add_module<nn::ReplicatedLinear>("to_added_qkv", d, 3 * d);
  } else if (joint) {
    add_q_k_v_proj_[1] = add_module<nn::ReplicatedLinear>("add_k_proj", d, d);
    add_q_k_v_proj_[2] = add_module<nn::ReplicatedLinear>("add_v_proj", d, d);
    add_q_k_v_proj_[0] = add_module<nn::ReplicatedLinear>("add_q_proj", d, d);
  }
  auto* to_out = add_module<nn::ModuleList>("to_out");
  to_out_ = to_out->append<nn::ReplicatedLinear>(d, d);
  out_dropout_ = to_out->append<nn::ActivationModule>(nn::Activation::Identity);
  if (joint && !context_pre_only) to_add_out_ = add_module<nn::ReplicatedLinear>("to_add_out", d, d);
  if (joint && c.qk_norm) {
    norm_added_q_ = add_module<nn::RMSNorm>("norm_added_q", dh, kEps);
    norm_added_k_ = add_module<nn::RMSNorm>("norm_added_k", dh, kEps);
  }
}

std::array<Tensor, 3> SD3Attention::project(const Tensor& x, const nn::ReplicatedLinear* fused,
                                            const std::array<nn::ReplicatedLinear*, 3>& separate,
                                            const nn::RMSNorm* norm_q, const nn::RMSNorm* norm_k) const {
  std::array<Tensor, 3> qkv;
  const Tensor all = fused ? fused->forward(x) : Tensor{};
  for (int i = 0; i < 3; ++i) {
    const Tensor t = fused ? all.narrow(-1, i * all.size(-1) / 3, all.size(-1) / 3) : separate[i]->forward(x);
    qkv[i] = t.reshape({t.size(0), t.size(1), num_heads_, -1});
  }
  // The reference normalises [B, H, S, dh]; normalising that view of the same numbers lets
  // traces see its shape.
  if (norm_q) qkv[0] = norm_q->forward(qkv[0].transpose(1, 2)).transpose(1, 2);
  if (norm_k) qkv[1] = norm_k->forward(qkv[1].transpose(1, 2)).transpose(1, 2);
  return qkv;
}

Tensor SD3Attention::merge_heads(const Tensor& t) const { return t.reshape({t.size(0), t.size(1), -1}); }

SD3Attention::Output SD3Attention::forward(const Tensor& x, const Tensor& context, int64_t image_tokens) const {
  const auto [q, k, v] = project(x, to_qkv_, to_q_k_v_, norm_q_, norm_k_);
  // SD3 has no rotary embedding: positions came in with the patch embedding.
  constexpr auto kNoRope = ops::RopeStyle::Interleaved;
  if (!context.defined()) {  // SD3.5's attn2: the image tokens alone
    const Tensor attended = attention_.forward(q, k, v, image_tokens, nullptr, kNoRope).out;
    return {emit(out_dropout_->forward(to_out_->forward(merge_heads(attended)))), {}};
  }
  const auto [cq, ck, cv] = project(context, to_added_qkv_, add_q_k_v_proj_, norm_added_q_, norm_added_k_);
  const auto attended = attention_.forward(q, k, v, image_tokens, nullptr, kNoRope, cq, ck, cv);
  Output out;
  out.context = merge_heads(attended.replicated_out);
  if (to_add_out_) out.context = to_add_out_->forward(out.context);
  out.x = out_dropout_->forward(to_out_->forward(merge_heads(attended.out)));
  emit(out.x, "out[0]");
  emit(out.context, "out[1]");
  return out;
}

// ---- block ---------------------------------------------------------------------------

JointTransformerBlock::JointTransformerBlock(const SD3ArchConfig& c, bool context_pre_only, bool dual_attention,
                                             const BuildOptions& options)
    : Module("JointTransformerBlock") {
  const int64_t d = c.hidden_size;
  norm1_ = add_module<nn::AdaLayerNormZero>("norm1", d, dual_attention);
  if (context_pre_only) {
    norm1_context_pre_only_ = add_module<nn::AdaLayerNormContinuous>("norm1_context", d, d, 1e-6f);
  } else {
    norm1_context_ = add_module<nn::AdaLayerNormZero>("norm1_context", d);
  }
  attn_ = add_module<SD3Attention>("attn", c, true, context_pre_only, options);
  if (dual_attention) attn2_ = add_module<SD3Attention>("attn2", c, false, false, options);
  norm2_ = add_module<nn::LayerNorm>("norm2", d, 1e-6f, false);
  ff_ = add_module<nn::FeedForward>("ff", d, 4 * d, d, nn::Activation::GELUTanh);
  if (!context_pre_only) {
    norm2_context_ = add_module<nn::LayerNorm>("norm2_context", d, 1e-6f, false);
    ff_context_ = add_module<nn::FeedForward>("ff_context", d, 4 * d, d, nn::Activation::GELUTanh);
  }
  // Under precision fp8: the attention projections and FFNs, not the adaLN linears.
  for (nn::Module* part : std::initializer_list<nn::Module*>{attn_, attn2_, ff_, ff_context_})
    if (part) nn::allow_fp8_linears(*part);
}

JointTransformerBlock::Output JointTransformerBlock::forward(const Tensor& x_in, const Tensor& context_in,
                                                             const Tensor& temb, int64_t image_tokens) const {
  const DType dtype = x_in.dtype();
  const auto n = norm1_->forward(x_in, temb);
  // The last block normalises its text stream without gates (they would have nothing to gate).
  nn::AdaLayerNormZero::Output nc;
  if (norm1_context_) {
    nc = norm1_context_->forward(context_in, temb);
  } else {
    nc.x = norm1_context_pre_only_->forward(context_in, temb);
  }
  const auto attn = attn_->forward(n.x, nc.x, image_tokens);

  // Image stream: gated residuals of the attention(s) and the feed-forward.
  Tensor x = ops::gated_add(x_in, attn.x, n.gate_msa, dtype);
  if (attn2_) x = ops::gated_add(x, attn2_->forward(n.x2, {}, image_tokens).x, n.gate_msa2, dtype);
  const Tensor ff_in = norm2_->forward_modulated(x, n.shift_mlp, n.scale_mlp, dtype);
  x = ops::gated_add(x, ff_->forward(ff_in), n.gate_mlp, dtype);

  // Text stream, unless this block only feeds the attention.
  Tensor context;
  if (ff_context_) {
    context = ops::gated_add(context_in, attn.context, nc.gate_msa, dtype);
    const Tensor ffc_in = norm2_context_->forward_modulated(context, nc.shift_mlp, nc.scale_mlp, dtype);
    context = ops::gated_add(context, ff_context_->forward(ffc_in), nc.gate_mlp, dtype);
    emit(context, "out[0]");
  }
  emit(x, "out[1]");
  return {context, x};
}

// ---- model ---------------------------------------------------------------------------

SD3Transformer2DModel::SD3Transformer2DModel(SD3ArchConfig config, const BuildOptions& options)
    : DiTModel("SD3Transformer2DModel"),
      config_(std::move(config)),
      parallel_(options.sequence_parallel ? *options.sequence_parallel : nn::single_process()) {
  const auto& c = config_;
  const int64_t d = c.hidden_size;
  pos_embed_ = add_module<nn::CroppedPatchEmbed>("pos_embed", c.in_channels, d, c.patch_size, c.pos_embed_max_size);
  time_text_embed_ = add_module<nn::CombinedTimestepTextProjEmbeddings>("time_text_embed", d, c.pooled_projection_dim);
  context_embedder_ = add_module<nn::ReplicatedLinear>("context_embedder", c.joint_attention_dim, c.caption_projection_dim);
  transformer_blocks_ = add_module<nn::ModuleList>("transformer_blocks");
  for (int64_t i = 0; i < c.num_layers; ++i)
    transformer_blocks_->append<JointTransformerBlock>(c, i == c.num_layers - 1, c.dual_attention(i), options);
  norm_out_ = add_module<nn::AdaLayerNormContinuous>("norm_out", d, d, 1e-6f);
  proj_out_ = add_module<nn::ReplicatedLinear>("proj_out", d, c.patch_size * c.patch_size * c.out_channels);
  if (options.fuse_projections) mapping_ = fused_projection_mapping();
}

ModelIO SD3Transformer2DModel::io() const {
  ModelIO io;
  io.tensors = {{"hidden_states", {4}, ElementKind::Floating, true, InputRole::Latents},
                {"encoder_hidden_states", {3}, ElementKind::Floating, true, InputRole::TextEmbeddings},
                {"pooled_projections", {2}, ElementKind::Floating, true, InputRole::Other},
                {"timestep", {1}, ElementKind::Number, true, InputRole::Timestep}};
  io.args = {{"skip_layers", ArgType::IntList}};
  io.outputs = {"sample"};
  return io;
}

Tensor SD3Transformer2DModel::unpatchify(const Tensor& tokens, int64_t height, int64_t width) const {
  // Each token holds its p x p patch as (p, q, channel), channel fastest.
  const int64_t p = config_.patch_size, c = config_.out_channels, b = tokens.size(0);
  const Tensor grid = tokens.reshape({b, height / p, width / p, p, p, c});
  return ops::permute(grid, std::vector<int64_t>{0, 5, 1, 3, 2, 4}).reshape({b, c, height, width});
}

TensorMap SD3Transformer2DModel::run(const TensorMap& inputs, const ArgMap& args) {
  const auto& c = config_;
  const Tensor& latents = input_or_none(inputs, "hidden_states");
  const Tensor& text = input_or_none(inputs, "encoder_hidden_states");
  const Tensor& pooled = input_or_none(inputs, "pooled_projections");
  const Tensor& timestep = input_or_none(inputs, "timestep");
  FASTDIT_CHECK(latents.dim() == 4 && latents.size(1) == c.in_channels, "hidden_states must be [B, ",
                c.in_channels, ", H, W], got ", latents.str());
  const int64_t batch = latents.size(0);
  FASTDIT_CHECK(text.dim() == 3 && text.size(0) == batch && text.size(2) == c.joint_attention_dim,
                "encoder_hidden_states must be [", batch, ", L, ", c.joint_attention_dim, "], got ", text.str());
  FASTDIT_CHECK(pooled.dim() == 2 && pooled.size(0) == batch && pooled.size(1) == c.pooled_projection_dim,
                "pooled_projections must be [", batch, ", ", c.pooled_projection_dim, "], got ", pooled.str());
  FASTDIT_CHECK(timestep.dim() == 1 && timestep.size(0) == batch, "timestep must be [", batch, "], got ",
                timestep.str());

  // The pipeline's casts: latents and text embeddings in the run dtype, the timestep as
  // the scheduler gives it.
  const DType dtype = context_embedder_->weight->value.dtype();
  Tensor x = pos_embed_->forward(cast(latents, dtype));
  const int64_t image_tokens = x.size(1);
  // Sequence parallelism: from here to the gather the image tokens are this rank's shard;
  // the text stream stays whole on every rank (replicated tokens of the joint attention).
  x = parallel_.shard_sequence(x, 1);
  const Tensor temb = time_text_embed_->forward(timestep, cast(pooled, dtype));
  Tensor context = context_embedder_->forward(cast(text, dtype));
  const std::vector<int64_t> skip = arg_int_list(args, "skip_layers").value_or(std::vector<int64_t>{});
  for (size_t i = 0; i < transformer_blocks_->size(); ++i) {
    if (std::find(skip.begin(), skip.end(), static_cast<int64_t>(i)) != skip.end()) continue;
    auto out = transformer_blocks_->at<JointTransformerBlock>(i)->forward(x, context, temb, image_tokens);
    x = std::move(out.x);
    context = std::move(out.context);
  }
  x = proj_out_->forward(norm_out_->forward(x, temb));
  x = parallel_.gather_sequence(x, 1, image_tokens);  // proj_out is per token: gather its narrower output
  return {{"sample", unpatchify(x, latents.size(2), latents.size(3))}};
}

TensorMap SD3Transformer2DModel::example_inputs(const ExampleShape& s, uint64_t seed) const {
  const auto& c = config_;
  FASTDIT_CHECK(s.frames == 1, "SD3Transformer2DModel is an image model: the example shape needs 1 latent "
                "frame, got ", s.frames);
  TensorMap inputs;
  inputs["hidden_states"] =
      ops::random_uniform({s.batch, c.in_channels, s.height, s.width}, DType::Float32, seed, -1.0f, 1.0f);
  inputs["encoder_hidden_states"] =
      ops::random_uniform({s.batch, s.text_len, c.joint_attention_dim}, DType::Float32, seed + 1, -1.0f, 1.0f);
  inputs["pooled_projections"] =
      ops::random_uniform({s.batch, c.pooled_projection_dim}, DType::Float32, seed + 2, -1.0f, 1.0f);
  inputs["timestep"] = ops::random_uniform({s.batch}, DType::Float32, seed + 3, 0.0f, 1000.0f);
  return inputs;
}

ParamNameMapping fused_projection_mapping() {
  ParamNameMapping m;
  const std::string attention = R"(^(transformer_blocks\.\d+\.attn2?)\.)", wb = R"(\.(weight|bias)$)";
  const char* image[] = {"to_q", "to_k", "to_v"};
  const char* text[] = {"add_q_proj", "add_k_proj", "add_v_proj"};
  for (int i = 0; i < 3; ++i) {
    m.merge(attention + image[i] + wb, "$1.to_qkv.$2", i, 3);
    m.merge(attention + text[i] + wb, "$1.to_added_qkv.$2", i, 3);
  }
  return m;
}

void register_models() {
  register_dit("SD3Transformer2DModel", [](ConfigReader& config, const BuildOptions& options) {
    return std::make_unique<SD3Transformer2DModel>(SD3ArchConfig::from_reader(config), options);
  });
}

}  // namespace fastdit::sd3
