#include "models/dits/flux.h"

namespace fastdit::flux {

using ops::cast;

namespace {
constexpr float kEps = 1e-6f;

// The reference guards its float16 residual streams against overflow to infinity.
Tensor clip_float16(const Tensor& x) {
  if (x.dtype() != DType::Float16) return x;
  constexpr float kMax = 65504.0f;  // the largest finite float16
  return ops::clamp(x, -kMax, kMax);
}

nn::RotaryTable rows(const nn::RotaryTable& table, int64_t first, int64_t count) {
  return {table.cos.narrow(0, first, count), table.sin.narrow(0, first, count), {}, {}};
}

Tensor merge_heads(const Tensor& t) { return t.reshape({t.size(0), t.size(1), -1}); }

Tensor join(const Tensor& first, const Tensor& second) {
  const Tensor parts[] = {first, second};
  return ops::concat(parts, 1);
}
}  // namespace

// ---- positions -----------------------------------------------------------------------

JointRotary FluxPosEmbed::forward(const Tensor& txt_ids, const Tensor& img_ids, Device device) const {
  const int64_t text = txt_ids.size(0), image = img_ids.size(0);
  const Tensor parts[] = {cast(txt_ids.to(Device::cpu()), DType::Float32),
                          cast(img_ids.to(Device::cpu()), DType::Float32)};
  const Tensor ids = ops::concat(parts, 0);
  const Key key{ids.to_float_vector(), text, device.type, device.index};
  auto found = cached_.find(key);
  if (found == cached_.end()) {
    nn::RotaryTable table = nn::rotary_position_table(axes_dim_, ids, 10000.0, ops::RopeStyle::Interleaved);
    table.cos = table.cos.to(device);
    table.sin = table.sin.to(device);
    found = cached_.emplace(key, std::move(table)).first;
  }
  const nn::RotaryTable& table = found->second;
  if (has_forward_hooks()) {  // the reference returns (cos, sin), [L + N, head_dim] each
    emit(table.cos, "out[0]");
    emit(table.sin, "out[1]");
  }
  return {rows(table, 0, text), rows(table, text, image), rows(table, 0, text + image)};
}

// ---- attention -----------------------------------------------------------------------

FluxAttention::FluxAttention(const FluxArchConfig& c, bool joint, const BuildOptions& options)
    : Module("FluxAttention"),
      num_heads_(c.num_attention_heads),
      fused_(options.fuse_projections),
      attention_(options.sequence_parallel) {
  const int64_t d = c.hidden_size, dh = c.attention_head_dim;
  // Declared in the reference's order, so the parameter list matches its state dict.
  norm_q_ = add_module<nn::RMSNorm>("norm_q", dh, kEps);
  norm_k_ = add_module<nn::RMSNorm>("norm_k", dh, kEps);
  if (fused_ && joint) {
    to_qkv_ = add_module<nn::ReplicatedLinear>("to_qkv", d, 3 * d);
  } else if (!fused_) {
    to_q_k_v_ = {add_module<nn::ReplicatedLinear>("to_q", d, d), add_module<nn::ReplicatedLinear>("to_k", d, d),
                 add_module<nn::ReplicatedLinear>("to_v", d, d)};
  }
  if (!joint) return;  // pre_only: the single-stream block projects the output itself
  auto* to_out = add_module<nn::ModuleList>("to_out");
  to_out_ = to_out->append<nn::ReplicatedLinear>(d, d);
  out_dropout_ = to_out->append<nn::ActivationModule>(nn::Activation::Identity);
  norm_added_q_ = add_module<nn::RMSNorm>("norm_added_q", dh, kEps);
  norm_added_k_ = add_module<nn::RMSNorm>("norm_added_k", dh, kEps);
  if (fused_) {
    to_added_qkv_ = add_module<nn::ReplicatedLinear>("to_added_qkv", d, 3 * d);
  } else {
    add_q_k_v_proj_ = {add_module<nn::ReplicatedLinear>("add_q_proj", d, d),
                       add_module<nn::ReplicatedLinear>("add_k_proj", d, d),
                       add_module<nn::ReplicatedLinear>("add_v_proj", d, d)};
  }
  to_add_out_ = add_module<nn::ReplicatedLinear>("to_add_out", d, d);
}

FluxAttention::Heads FluxAttention::project(const Tensor& x, const nn::ReplicatedLinear* fused,
                                            const std::array<nn::ReplicatedLinear*, 3>& qkv,
                                            const nn::RMSNorm* norm_q, const nn::RMSNorm* norm_k) const {
  const auto heads = [&](const Tensor& t) { return t.reshape({t.size(0), t.size(1), num_heads_, -1}); };
  if (!fused_) {
    return {norm_q->forward(heads(qkv[0]->forward(x))), norm_k->forward(heads(qkv[1]->forward(x))),
            heads(qkv[2]->forward(x))};
  }
  const Tensor all = fused ? fused->forward(x) : x;  // the single stream's q|k|v comes projected
  const int64_t d = all.size(-1) / 3;
  return {norm_q->forward(heads(all.narrow(-1, 0, d))), norm_k->forward(heads(all.narrow(-1, d, d))),
          heads(all.narrow(-1, 2 * d, d))};
}

nn::DistributedAttention::Output FluxAttention::attend(const Heads& image, const Heads& text,
                                                       const JointRotary& rope, int64_t image_tokens) const {
  constexpr auto kStyle = ops::RopeStyle::Interleaved;
  const Tensor text_q = ops::rope(text.q, rope.text.cos, rope.text.sin, kStyle);
  const Tensor text_k = ops::rope(text.k, rope.text.cos, rope.text.sin, kStyle);
  return attention_.forward(image.q, image.k, image.v, image_tokens, &rope.image, kStyle, text_q, text_k, text.v);
}

bool FluxAttention::one_pass(const nn::RMSNorm* norm_q, const nn::RMSNorm* norm_k) const {
  return fused_ && attention_.parallel().world_size() == 1 && norm_q->weight && norm_k->weight &&
         !norm_q->has_forward_hooks() && !norm_k->has_forward_hooks();
}

FluxAttention::Heads FluxAttention::norm_rope(const Tensor& qkv, const nn::RMSNorm* norm_q, const nn::RMSNorm* norm_k,
                                              const nn::RotaryTable& table) const {
  // torch.nn.RMSNorm per head: the weight applied in float32, rounded once.
  ops::QKV r = ops::qkv_norm_rope(qkv, norm_q->weight->value, norm_k->weight->value, norm_q->eps(), num_heads_,
                                  table.cos, table.sin, ops::RopeStyle::Interleaved, ops::QkNorm::PerHeadOnce);
  return {std::move(r.q), std::move(r.k), std::move(r.v)};
}

FluxAttention::Output FluxAttention::forward(const Tensor& x, const Tensor& context, const JointRotary& rope,
                                             int64_t image_tokens) const {
  nn::DistributedAttention::Output attended;
  if (to_qkv_ && one_pass(norm_q_, norm_k_) && one_pass(norm_added_q_, norm_added_k_)) {
    // Each stream's heads normalised and rotated with its own rows of the table, in one pass.
    const Heads image = norm_rope(to_qkv_->forward(x), norm_q_, norm_k_, rope.image);
    const Heads text = norm_rope(to_added_qkv_->forward(context), norm_added_q_, norm_added_k_, rope.text);
    attended = attention_.forward(image.q, image.k, image.v, image_tokens, nullptr, ops::RopeStyle::Interleaved,
                                  text.q, text.k, text.v);
  } else {
    const Heads image = project(x, to_qkv_, to_q_k_v_, norm_q_, norm_k_);
    const Heads text = project(context, to_added_qkv_, add_q_k_v_proj_, norm_added_q_, norm_added_k_);
    attended = attend(image, text, rope, image_tokens);
  }
  Output out;
  out.x = out_dropout_->forward(to_out_->forward(merge_heads(attended.out)));
  out.context = to_add_out_->forward(merge_heads(attended.replicated_out));
  emit(out.x, "out[0]");
  emit(out.context, "out[1]");
  return out;
}

Tensor FluxAttention::forward_joined(const Tensor& joined, int64_t text_tokens, const JointRotary& rope,
                                     int64_t image_tokens) const {
  if (one_pass(norm_q_, norm_k_)) {
    // One process: the joined sequence (text rows first, as the table's) is the attention's
    // whole sequence, normalised and rotated in one pass from the q|k|v columns of the
    // block's projection, read in place; no split into streams and no joins.
    const Heads all = norm_rope(joined, norm_q_, norm_k_, rope.joint);
    return emit(merge_heads(
        attention_.forward(all.q, all.k, all.v, joined.size(1), nullptr, ops::RopeStyle::Interleaved).out));
  }
  const Heads all = project(joined, nullptr, to_q_k_v_, norm_q_, norm_k_);
  const int64_t local = joined.size(1) - text_tokens;
  const auto part = [&](int64_t first, int64_t count) {
    return Heads{all.q.narrow(1, first, count), all.k.narrow(1, first, count), all.v.narrow(1, first, count)};
  };
  const auto attended = attend(part(text_tokens, local), part(0, text_tokens), rope, image_tokens);
  return emit(merge_heads(join(attended.replicated_out, attended.out)));
}

// ---- blocks --------------------------------------------------------------------------

FluxTransformerBlock::FluxTransformerBlock(const FluxArchConfig& c, const BuildOptions& options)
    : Module("FluxTransformerBlock") {
  const int64_t d = c.hidden_size;
  norm1_ = add_module<nn::AdaLayerNormZero>("norm1", d);
  norm1_context_ = add_module<nn::AdaLayerNormZero>("norm1_context", d);
  attn_ = add_module<FluxAttention>("attn", c, true, options);
  norm2_ = add_module<nn::LayerNorm>("norm2", d, kEps, false);
  ff_ = add_module<nn::FeedForward>("ff", d, 4 * d, d, nn::Activation::GELUTanh);
  norm2_context_ = add_module<nn::LayerNorm>("norm2_context", d, kEps, false);
  ff_context_ = add_module<nn::FeedForward>("ff_context", d, 4 * d, d, nn::Activation::GELUTanh);
  // Under precision fp8: both streams' attention projections and FFNs, not the adaLN linears.
  for (nn::Module* part : std::initializer_list<nn::Module*>{attn_, ff_, ff_context_}) nn::allow_fp8_linears(*part);
}

FluxTransformerBlock::Output FluxTransformerBlock::forward(const Tensor& x_in, const Tensor& context_in,
                                                           const Tensor& temb, const JointRotary& rope,
                                                           int64_t image_tokens) const {
  const DType dtype = x_in.dtype();
  const auto n = norm1_->forward(x_in, temb);
  const auto nc = norm1_context_->forward(context_in, temb);
  const auto attn = attn_->forward(n.x, nc.x, rope, image_tokens);

  Tensor x = ops::gated_add(x_in, attn.x, n.gate_msa, dtype);
  const Tensor ff_in = norm2_->forward_modulated(x, n.shift_mlp, n.scale_mlp, dtype);
  x = ops::gated_add(x, ff_->forward(ff_in), n.gate_mlp, dtype);

  Tensor context = ops::gated_add(context_in, attn.context, nc.gate_msa, dtype);
  const Tensor ffc_in = norm2_context_->forward_modulated(context, nc.shift_mlp, nc.scale_mlp, dtype);
  context = clip_float16(ops::gated_add(context, ff_context_->forward(ffc_in), nc.gate_mlp, dtype));
  emit(context, "out[0]");
  emit(x, "out[1]");
  return {context, x};
}

FluxSingleTransformerBlock::FluxSingleTransformerBlock(const FluxArchConfig& c, const BuildOptions& options)
    : Module("FluxSingleTransformerBlock") {
  const int64_t d = c.hidden_size, mlp = 4 * d;
  norm_ = add_module<nn::AdaLayerNormZeroSingle>("norm", d);
  if (options.fuse_projections) {
    to_qkv_mlp_ = add_module<nn::ReplicatedLinear>("to_qkv_mlp", d, 3 * d + mlp);
  } else {
    proj_mlp_ = add_module<nn::ReplicatedLinear>("proj_mlp", d, mlp);
  }
  act_mlp_ = add_module<nn::ActivationModule>("act_mlp", nn::Activation::GELUTanh);
  proj_out_ = add_module<nn::ReplicatedLinear>("proj_out", d + mlp, d);
  attn_ = add_module<FluxAttention>("attn", c, false, options);
  // Under precision fp8: the joined q|k|v(|mlp) projection, the MLP and the output
  // projection, not the adaLN linear of norm.
  for (nn::Module* part : std::initializer_list<nn::Module*>{attn_, proj_out_, to_qkv_mlp_, proj_mlp_})
    if (part) nn::allow_fp8_linears(*part);
}

Tensor FluxSingleTransformerBlock::forward(const Tensor& joined, int64_t text_tokens, const Tensor& temb,
                                           const JointRotary& rope, int64_t image_tokens) const {
  const auto n = norm_->forward(joined, temb);
  Tensor mlp, attn;
  if (to_qkv_mlp_) {
    const Tensor all = to_qkv_mlp_->forward(n.x);
    const int64_t qkv = 3 * joined.size(-1);
    mlp = act_mlp_->forward(all.narrow(-1, qkv, all.size(-1) - qkv).contiguous());
    attn = attn_->forward_joined(all.narrow(-1, 0, qkv), text_tokens, rope, image_tokens);
  } else {
    mlp = act_mlp_->forward(proj_mlp_->forward(n.x));
    attn = attn_->forward_joined(n.x, text_tokens, rope, image_tokens);
  }
  const Tensor parts[] = {attn, mlp};
  const Tensor out = clip_float16(ops::gated_add(joined, proj_out_->forward_concat(parts), n.gate, joined.dtype()));
  if (has_forward_hooks()) {
    emit(out.narrow(1, 0, text_tokens), "out[0]");
    emit(out.narrow(1, text_tokens, out.size(1) - text_tokens), "out[1]");
  }
  return out;
}

// ---- model ---------------------------------------------------------------------------

FluxTransformer2DModel::FluxTransformer2DModel(FluxArchConfig config, const BuildOptions& options)
    : DiTModel("FluxTransformer2DModel"),
      config_(std::move(config)),
      mapping_(original_layout_mapping(config_, options.fuse_projections)),
      parallel_(options.sequence_parallel ? *options.sequence_parallel : nn::single_process()) {
  const auto& c = config_;
  const int64_t d = c.hidden_size;
  pos_embed_ = add_module<FluxPosEmbed>("pos_embed", c.axes_dims_rope);
  time_text_embed_ = add_module<nn::CombinedTimestepTextProjEmbeddings>("time_text_embed", d,
                                                                        c.pooled_projection_dim, c.guidance_embeds);
  context_embedder_ = add_module<nn::ReplicatedLinear>("context_embedder", c.joint_attention_dim, d);
  x_embedder_ = add_module<nn::ReplicatedLinear>("x_embedder", c.in_channels, d);
  transformer_blocks_ = add_module<nn::ModuleList>("transformer_blocks");
  for (int64_t i = 0; i < c.num_layers; ++i) transformer_blocks_->append<FluxTransformerBlock>(c, options);
  single_transformer_blocks_ = add_module<nn::ModuleList>("single_transformer_blocks");
  for (int64_t i = 0; i < c.num_single_layers; ++i)
    single_transformer_blocks_->append<FluxSingleTransformerBlock>(c, options);
  norm_out_ = add_module<nn::AdaLayerNormContinuous>("norm_out", d, d, kEps);
  proj_out_ = add_module<nn::ReplicatedLinear>("proj_out", d, c.patch_size * c.patch_size * c.out_channels);
}

ModelIO FluxTransformer2DModel::io() const {
  ModelIO io;
  io.tensors = {{"hidden_states", {3}, ElementKind::Floating, true, InputRole::Latents},
                {"encoder_hidden_states", {3}, ElementKind::Floating, true, InputRole::TextEmbeddings},
                {"pooled_projections", {2}, ElementKind::Floating, true, InputRole::Other},
                {"timestep", {1}, ElementKind::Number, true, InputRole::Timestep},
                // [S, 3]; the deprecated [B, S, 3] is read as its item 0, as the reference does.
                // Read on the host: their values pick the rotary table.
                {"img_ids", {2, 3}, ElementKind::Number, true, InputRole::Other, true},
                {"txt_ids", {2, 3}, ElementKind::Number, true, InputRole::Other, true}};
  if (config_.guidance_embeds)
    io.tensors.push_back({"guidance", {1}, ElementKind::Number, true, InputRole::Other});
  io.outputs = {"sample"};
  return io;
}

namespace {
// ids [S, A], or the deprecated [B, S, A] read as item 0; checked against the sequence.
Tensor position_ids(const Tensor& ids, const char* name, int64_t tokens, size_t axes) {
  const Tensor flat = ids.dim() == 3 ? ids.narrow(0, 0, 1).squeeze(0) : ids;
  FASTDIT_CHECK(flat.size(0) == tokens && flat.size(1) == static_cast<int64_t>(axes), name, " must be [", tokens,
                ", ", axes, "] (one row per token, one column per axis of axes_dims_rope), got ", ids.str());
  return flat;
}
}  // namespace

TensorMap FluxTransformer2DModel::run(const TensorMap& inputs, const ArgMap&) {
  const auto& c = config_;
  const Tensor& latents = input_or_none(inputs, "hidden_states");
  const Tensor& text = input_or_none(inputs, "encoder_hidden_states");
  const Tensor& pooled = input_or_none(inputs, "pooled_projections");
  const Tensor& timestep = input_or_none(inputs, "timestep");
  FASTDIT_CHECK(latents.size(2) == c.in_channels, "hidden_states must be [B, N, ", c.in_channels,
                "] (packed latents), got ", latents.str());
  const int64_t batch = latents.size(0), image_tokens = latents.size(1), text_tokens = text.size(1);
  FASTDIT_CHECK(text.size(0) == batch && text.size(2) == c.joint_attention_dim, "encoder_hidden_states must be [",
                batch, ", L, ", c.joint_attention_dim, "], got ", text.str());
  FASTDIT_CHECK(pooled.size(0) == batch && pooled.size(1) == c.pooled_projection_dim, "pooled_projections must be [",
                batch, ", ", c.pooled_projection_dim, "], got ", pooled.str());
  FASTDIT_CHECK(timestep.size(0) == batch, "timestep must be [", batch, "], got ", timestep.str());
  const Tensor txt_ids = position_ids(input_or_none(inputs, "txt_ids"), "txt_ids", text_tokens, c.axes_dims_rope.size());
  const Tensor img_ids = position_ids(input_or_none(inputs, "img_ids"), "img_ids", image_tokens, c.axes_dims_rope.size());

  // The pipeline's casts: latents and text embeddings in the run dtype. The timestep (and
  // guidance) are cast to it too and scaled by 1000 in it, as the reference does.
  const DType dtype = x_embedder_->weight->value.dtype();
  const auto times_1000 = [&](const Tensor& t) { return ops::scale(cast(t, dtype), 1000.0f); };
  Tensor guidance;
  if (c.guidance_embeds) {
    guidance = input_or_none(inputs, "guidance");
    FASTDIT_CHECK(guidance.size(0) == batch, "guidance must be [", batch, "], got ", guidance.str());
    guidance = times_1000(guidance);
  }
  Tensor x = x_embedder_->forward(cast(latents, dtype));
  const Tensor temb = time_text_embed_->forward(times_1000(timestep), cast(pooled, dtype), guidance);
  Tensor context = context_embedder_->forward(cast(text, dtype));
  const JointRotary rope = pos_embed_->forward(txt_ids, img_ids, x.device());

  // Sequence parallelism: from here to the gather the image tokens are this rank's shard;
  // the text tokens stay whole on every rank (replicated tokens of the joint attention).
  x = parallel_.shard_sequence(x, 1);
  for (size_t i = 0; i < transformer_blocks_->size(); ++i) {
    auto out = transformer_blocks_->at<FluxTransformerBlock>(i)->forward(x, context, temb, rope, image_tokens);
    x = std::move(out.x);
    context = std::move(out.context);
  }
  Tensor joined = join(context, x);
  for (size_t i = 0; i < single_transformer_blocks_->size(); ++i)
    joined = single_transformer_blocks_->at<FluxSingleTransformerBlock>(i)->forward(joined, text_tokens, temb, rope,
                                                                                     image_tokens);
  x = joined.narrow(1, text_tokens, joined.size(1) - text_tokens);
  x = proj_out_->forward(norm_out_->forward(x, temb));
  return {{"sample", parallel_.gather_sequence(x, 1, image_tokens)}};
}

TensorMap FluxTransformer2DModel::example_inputs(const ExampleShape& s, uint64_t seed) const {
  const auto& c = config_;
  FASTDIT_CHECK(s.frames == 1, "FluxTransformer2DModel is an image model: the example shape needs 1 latent "
                "frame, got ", s.frames);
  FASTDIT_CHECK(s.height % 2 == 0 && s.width % 2 == 0, "FluxTransformer2DModel packs 2 x 2 latent patches: the "
                "example latent ", s.height, " x ", s.width, " must be even");
  const int64_t h = s.height / 2, w = s.width / 2, axes = static_cast<int64_t>(c.axes_dims_rope.size());
  TensorMap inputs;
  inputs["hidden_states"] = ops::random_uniform({s.batch, h * w, c.in_channels}, DType::Float32, seed, -1.0f, 1.0f);
  inputs["encoder_hidden_states"] =
      ops::random_uniform({s.batch, s.text_len, c.joint_attention_dim}, DType::Float32, seed + 1, -1.0f, 1.0f);
  inputs["pooled_projections"] =
      ops::random_uniform({s.batch, c.pooled_projection_dim}, DType::Float32, seed + 2, -1.0f, 1.0f);
  inputs["timestep"] = ops::random_uniform({s.batch}, DType::Float32, seed + 3, 0.0f, 1.0f);
  if (c.guidance_embeds)  // FLUX.1-dev's usual guidance scale
    inputs["guidance"] = Tensor::from_vector(std::vector<float>(static_cast<size_t>(s.batch), 3.5f), {s.batch});
  // FluxPipeline's ids: text at position 0, image token (r, c) at (0, r, c).
  inputs["txt_ids"] = Tensor::zeros({s.text_len, axes}, DType::Float32);
  Tensor img_ids = Tensor::zeros({h * w, axes}, DType::Float32);
  float* ids = img_ids.data<float>();
  for (int64_t r = 0; r < h; ++r)
    for (int64_t col = 0; col < w; ++col) {
      if (axes > 1) ids[(r * w + col) * axes + 1] = static_cast<float>(r);
      if (axes > 2) ids[(r * w + col) * axes + 2] = static_cast<float>(col);
    }
  inputs["img_ids"] = img_ids;
  return inputs;
}

ParamNameMapping original_layout_mapping(const FluxArchConfig& c, bool fused) {
  const int64_t d = c.hidden_size;
  const std::string wb = R"(\.(weight|bias)$)";
  ParamNameMapping m;
  const std::pair<const char*, const char*> embedders[] = {
      {"time_in", "timestep_embedder"}, {"guidance_in", "guidance_embedder"}, {"vector_in", "text_embedder"}};
  for (const auto& [original, native] : embedders) {
    m.rename(std::string("^") + original + R"(\.in_layer)" + wb,
             std::string("time_text_embed.") + native + ".linear_1.$1");
    m.rename(std::string("^") + original + R"(\.out_layer)" + wb,
             std::string("time_text_embed.") + native + ".linear_2.$1");
  }
  m.rename(R"(^txt_in)" + wb, "context_embedder.$1");
  m.rename(R"(^img_in)" + wb, "x_embedder.$1");
  m.rename(R"(^final_layer\.linear)" + wb, "proj_out.$1");
  m.reorder_rows(R"(^final_layer\.adaLN_modulation\.1)" + wb, "norm_out.linear.$1", {d, d}, {1, 0});

  const std::string dbl = R"(^double_blocks\.(\d+)\.)", to_dbl = "transformer_blocks.$1.";
  const std::pair<const char*, const char*> double_renames[] = {
      {R"(img_mod\.lin)", "norm1.linear"},         {R"(txt_mod\.lin)", "norm1_context.linear"},
      {R"(img_attn\.proj)", "attn.to_out.0"},      {R"(txt_attn\.proj)", "attn.to_add_out"},
      {R"(img_mlp\.0)", "ff.net.0.proj"},          {R"(img_mlp\.2)", "ff.net.2"},
      {R"(txt_mlp\.0)", "ff_context.net.0.proj"},  {R"(txt_mlp\.2)", "ff_context.net.2"}};
  for (const auto& [original, native] : double_renames) m.rename(dbl + original + wb, to_dbl + native + ".$2");
  if (fused) {
    m.rename(dbl + R"(img_attn\.qkv)" + wb, to_dbl + "attn.to_qkv.$2");
    m.rename(dbl + R"(txt_attn\.qkv)" + wb, to_dbl + "attn.to_added_qkv.$2");
  } else {
    m.split(dbl + R"(img_attn\.qkv)" + wb,
            {{to_dbl + "attn.to_q.$2", d}, {to_dbl + "attn.to_k.$2", d}, {to_dbl + "attn.to_v.$2", d}});
    m.split(dbl + R"(txt_attn\.qkv)" + wb, {{to_dbl + "attn.add_q_proj.$2", d},
                                            {to_dbl + "attn.add_k_proj.$2", d},
                                            {to_dbl + "attn.add_v_proj.$2", d}});
  }
  const std::pair<const char*, const char*> double_norms[] = {
      {"img_attn", "norm"}, {"txt_attn", "norm_added"}};
  for (const auto& [stream, native] : double_norms) {
    m.rename(dbl + stream + R"(\.norm\.query_norm\.scale$)", to_dbl + "attn." + native + "_q.weight");
    m.rename(dbl + stream + R"(\.norm\.key_norm\.scale$)", to_dbl + "attn." + native + "_k.weight");
  }

  const std::string single = R"(^single_blocks\.(\d+)\.)", to_single = "single_transformer_blocks.$1.";
  if (fused) {
    m.rename(single + R"(linear1)" + wb, to_single + "to_qkv_mlp.$2");
  } else {
    m.split(single + R"(linear1)" + wb, {{to_single + "attn.to_q.$2", d},
                                         {to_single + "attn.to_k.$2", d},
                                         {to_single + "attn.to_v.$2", d},
                                         {to_single + "proj_mlp.$2", 4 * d}});
  }
  m.rename(single + R"(linear2)" + wb, to_single + "proj_out.$2");
  m.rename(single + R"(modulation\.lin)" + wb, to_single + "norm.linear.$2");
  m.rename(single + R"(norm\.query_norm\.scale$)", to_single + "attn.norm_q.weight");
  m.rename(single + R"(norm\.key_norm\.scale$)", to_single + "attn.norm_k.weight");
  if (!fused) return m;
  // diffusers' layout onto the fused projections.
  const std::string in_dbl = R"(^(transformer_blocks\.\d+\.attn)\.)", in_single = R"(^(single_transformer_blocks\.\d+)\.)";
  const char* image[] = {"to_q", "to_k", "to_v"};
  const char* text[] = {"add_q_proj", "add_k_proj", "add_v_proj"};
  for (int i = 0; i < 3; ++i) {
    m.merge(in_dbl + image[i] + wb, "$1.to_qkv.$2", i, 3);
    m.merge(in_dbl + text[i] + wb, "$1.to_added_qkv.$2", i, 3);
    m.merge(in_single + "attn." + image[i] + wb, "$1.to_qkv_mlp.$2", i, 4);
  }
  m.merge(in_single + "proj_mlp" + wb, "$1.to_qkv_mlp.$2", 3, 4);
  return m;
}

void register_models() {
  register_dit("FluxTransformer2DModel", [](ConfigReader& config, const BuildOptions& options) {
    return std::make_unique<FluxTransformer2DModel>(FluxArchConfig::from_reader(config), options);
  });
}

}  // namespace fastdit::flux
