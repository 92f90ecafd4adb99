#include "models/dits/wan.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace fastdit::wan {

using nn::DTypePolicy;
using ops::cast;

namespace {
const DTypePolicy kFp32 = DTypePolicy::KeepFloat32;

const Tensor& param(const nn::Parameter* p) {
  FASTDIT_CHECK(p->value.defined(), "parameter used before it was loaded");
  return p->value;
}

// Parameter-free module that builds and emits the rotary table (diffusers `rope`).
class WanRotaryPosEmbed : public nn::Module {
 public:
  explicit WanRotaryPosEmbed(int64_t head_dim)
      : Module("WanRotaryPosEmbed"), tables_(axis_dims(head_dim), 10000.0, ops::RopeStyle::Interleaved) {}
  nn::RotaryTable forward(std::span<const int64_t> grid, Device device, const nn::SequenceParallel& parallel) const {
    const nn::RotaryTable& table = tables_.get(grid, device, parallel);
    if (has_forward_hooks()) {  // the reference returns [1, L, 1, dh]
      emit(table.cos.unsqueeze(0).unsqueeze(2), "out[0]");
      emit(table.sin.unsqueeze(0).unsqueeze(2), "out[1]");
    }
    return table;
  }

 private:
  static std::vector<int64_t> axis_dims(int64_t head_dim) {
    const int64_t hw = 2 * (head_dim / 6);
    return {head_dim - 2 * hw, hw, hw};
  }
  nn::RotaryTableCache tables_;
};
}  // namespace

// ---- image embedder (I2V / FLF2V) ----------------------------------------------------

class WanImageEmbedding : public nn::Module {
 public:
  WanImageEmbedding(int64_t image_dim, int64_t dim, std::optional<int64_t> pos_embed_seq_len)
      : Module("WanImageEmbedding") {
    norm1_ = add_module<nn::LayerNorm>("norm1", image_dim, 1e-5f, true, kFp32);
    ff_ = add_module<nn::FeedForward>("ff", image_dim, image_dim, dim, nn::Activation::GELU);
    norm2_ = add_module<nn::LayerNorm>("norm2", dim, 1e-5f, true, kFp32);
    if (pos_embed_seq_len) pos_embed_ = add_parameter("pos_embed", {1, *pos_embed_seq_len, image_dim});
  }
  Tensor forward(Tensor image) const {
    if (pos_embed_) {
      // FLF2V: first and last frame embeddings arrive stacked on the batch axis.
      const int64_t seq = image.size(1), width = image.size(2);
      FASTDIT_CHECK(2 * seq == pos_embed_->shape[1], "encoder_hidden_states_image: ", seq,
                    " tokens per image, but pos_embed expects 2 x ", pos_embed_->shape[1] / 2);
      FASTDIT_CHECK(image.size(0) % 2 == 0, "encoder_hidden_states_image: FLF2V needs an even "
                    "batch (first and last frame per sample), got ", image.size(0));
      image = ops::add(image.reshape({-1, 2 * seq, width}), param(pos_embed_));
    }
    return emit(norm2_->forward(ff_->forward(norm1_->forward(image))));
  }

 private:
  nn::LayerNorm *norm1_, *norm2_;
  nn::FeedForward* ff_;
  nn::Parameter* pos_embed_ = nullptr;
};

// ---- attention -----------------------------------------------------------------------

WanAttention::WanAttention(const WanArchConfig& c, bool cross_attention, const BuildOptions& options)
    : Module("WanAttention"), num_heads_(c.num_attention_heads), self_attention_(options.sequence_parallel) {
  const int64_t d = c.hidden_size;
  const bool fuse = options.fuse_projections;
  if (fuse && !cross_attention) {
    to_qkv_ = add_module<nn::ReplicatedLinear>("to_qkv", d, 3 * d);
  } else {
    to_q_ = add_module<nn::ReplicatedLinear>("to_q", d, d);
    if (fuse) {
      to_kv_ = add_module<nn::ReplicatedLinear>("to_kv", d, 2 * d);
    } else {
      to_k_ = add_module<nn::ReplicatedLinear>("to_k", d, d);
      to_v_ = add_module<nn::ReplicatedLinear>("to_v", d, d);
    }
  }
  auto* to_out = add_module<nn::ModuleList>("to_out");
  to_out_ = to_out->append<nn::ReplicatedLinear>(d, d);
  out_dropout_ = to_out->append<nn::ActivationModule>(nn::Activation::Identity);
  if (c.qk_norm) {
    norm_q_ = add_module<nn::RMSNorm>("norm_q", d, static_cast<float>(c.eps));
    norm_k_ = add_module<nn::RMSNorm>("norm_k", d, static_cast<float>(c.eps));
  }
  if (cross_attention && c.added_kv_proj_dim) {
    add_k_proj_ = add_module<nn::ReplicatedLinear>("add_k_proj", *c.added_kv_proj_dim, d);
    add_v_proj_ = add_module<nn::ReplicatedLinear>("add_v_proj", *c.added_kv_proj_dim, d);
    norm_added_k_ = add_module<nn::RMSNorm>("norm_added_k", d, static_cast<float>(c.eps));
  }
}

Tensor WanAttention::heads(const Tensor& t) const {
  return t.reshape({t.size(0), t.size(1), num_heads_, -1});
}

Tensor WanAttention::forward(Tensor x, const Tensor& context, const Tensor& image_context,
                             const nn::RotaryTable* rope) const {
  const int64_t d = to_out_->in_features();
  const bool sharded = self_attention_.parallel().world_size() > 1;
  if (to_qkv_ && norm_q_ && rope && (!sharded || rope->shard_cos.defined()) && !norm_q_->has_forward_hooks() &&
      !norm_k_->has_forward_hooks()) {
    // One pass from the fused projection to normalised, rotated heads (same numbers). A
    // shard is rotated with its own rows of the table before the exchange, which is the
    // same per-token math as rotating after it, so every SP size computes what SP=1 does.
    // Each input is dropped once used: at most the projection and q, k, v live together.
    const int64_t batch = x.size(0), seq = x.size(1);
    Tensor qkv = to_qkv_->forward(x);
    x = {};
    Tensor out;
    {
      const auto [q, k, v] = ops::qkv_norm_rope(qkv, param(norm_q_->weight), param(norm_k_->weight), norm_q_->eps(),
                                                num_heads_, sharded ? rope->shard_cos : rope->cos,
                                                sharded ? rope->shard_sin : rope->sin, ops::RopeStyle::Interleaved);
      qkv = {};
      out = self_attention_.forward(q, k, v, rope->cos.size(0), nullptr, ops::RopeStyle::Interleaved).out;
    }
    return emit(out_dropout_->forward(to_out_->forward(out.reshape({batch, seq, -1}))));
  }
  const Tensor& kv = context.defined() ? context : x;
  Tensor q, k, v;
  if (to_qkv_) {
    const Tensor qkv = to_qkv_->forward(x);
    q = qkv.narrow(-1, 0, d);
    k = qkv.narrow(-1, d, d);
    v = qkv.narrow(-1, 2 * d, d);
  } else if (to_kv_) {
    q = to_q_->forward(x);
    const Tensor both = to_kv_->forward(kv);
    k = both.narrow(-1, 0, d);
    v = both.narrow(-1, d, d);
  } else {
    q = to_q_->forward(x);
    k = to_k_->forward(kv);
    v = to_v_->forward(kv);
  }
  if (norm_q_) {
    q = norm_q_->forward(q);
    k = norm_k_->forward(k);
  }
  q = heads(q);
  Tensor out;
  if (rope) {  // self-attention: the full-sequence path that sequence parallelism shards
    const int64_t full_length = rope->cos.size(0);
    out = self_attention_.forward(q, heads(k), heads(v), full_length, rope, ops::RopeStyle::Interleaved).out;
  } else {
    out = cross_attention_.forward(q, heads(k), heads(v));
  }
  if (image_context.defined() && add_k_proj_) {
    Tensor k_img = norm_added_k_->forward(add_k_proj_->forward(image_context));
    Tensor v_img = add_v_proj_->forward(image_context);
    out = ops::add(out, cross_attention_.forward(q, heads(k_img), heads(v_img)));
  }
  out = out.reshape({x.size(0), x.size(1), -1});
  return emit(out_dropout_->forward(to_out_->forward(out)));
}

// ---- block ---------------------------------------------------------------------------

WanTransformerBlock::WanTransformerBlock(const WanArchConfig& c, const BuildOptions& options)
    : Module("WanTransformerBlock") {
  const auto eps = static_cast<float>(c.eps);
  const int64_t d = c.hidden_size;
  norm1_ = add_module<nn::LayerNorm>("norm1", d, eps, false, kFp32);
  attn1_ = add_module<WanAttention>("attn1", c, false, options);
  attn2_ = add_module<WanAttention>("attn2", c, true, options);
  if (c.cross_attn_norm) norm2_ = add_module<nn::LayerNorm>("norm2", d, eps, true, kFp32);
  ffn_ = add_module<nn::FeedForward>("ffn", d, c.ffn_dim, d, nn::Activation::GELUTanh);
  norm3_ = add_module<nn::LayerNorm>("norm3", d, eps, false, kFp32);
  scale_shift_table_ = add_parameter("scale_shift_table", {1, 6, d}, kFp32);
  // Under precision fp8: the attention projections and the FFN (the block's modulation is
  // the table above, no linear).
  for (nn::Module* part : std::initializer_list<nn::Module*>{attn1_, attn2_, ffn_}) nn::allow_fp8_linears(*part);
}

Modulation WanTransformerBlock::modulation(const Tensor& timestep_proj) const {
  // scale_shift_table + timestep_proj.float(), chunked in the reference's order.
  const int64_t d = scale_shift_table_->shape[2];
  const bool per_token = timestep_proj.dim() == 3;
  const Tensor table = per_token ? param(scale_shift_table_).unsqueeze(0) : param(scale_shift_table_);
  const Tensor proj = per_token ? timestep_proj.reshape({timestep_proj.size(0), timestep_proj.size(1), 6, d})
                                : timestep_proj.reshape({timestep_proj.size(0), 6, d});
  const Tensor e = ops::add(table, cast(proj, DType::Float32));
  const int64_t axis = per_token ? 2 : 1;
  auto chunk = [&](int64_t i) {
    Tensor piece = e.narrow(axis, i, 1);
    return (per_token ? piece.squeeze(2) : piece).contiguous();
  };
  return {chunk(0), chunk(1), chunk(2), chunk(3), chunk(4), chunk(5)};
}

Tensor WanTransformerBlock::forward(Tensor x, const Tensor& context, const Tensor& image_context,
                                    const Tensor& timestep_proj, const nn::RotaryTable& rope) const {
  const DType dtype = x.dtype();
  const Modulation m = modulation(timestep_proj);
  // Every residual add runs fused with the norm that follows it (the same numbers), and
  // each activation is dropped as soon as it is used, so at most the hidden state, the
  // attention's q|k|v projection and q, k, v live at once.
  // 1. self-attention with gated residual (float32 norm, modulation and residual math,
  //    each rounded once to the run dtype, as the reference's .float() ... .type_as()).
  Tensor n = norm1_->forward_modulated(x, m.shift_msa, m.scale_msa, dtype);
  Tensor y = attn1_->forward(std::move(n), {}, {}, &rope);
  // 2. cross-attention, ungated residual in the run dtype. The affine norm computes in
  //    float32 whatever x's dtype and rounds once, like norm2(x.float()).type_as(x).
  if (norm2_) {
    ops::AddNorm r = norm2_->add_and_forward(x, y, m.gate_msa);
    x = std::move(r.sum);
    n = std::move(r.normed);
  } else {
    x = ops::gated_add(x, y, m.gate_msa, dtype);
    n = x;
  }
  y = {};
  y = attn2_->forward(std::move(n), context, image_context, nullptr);
  // 3. feed-forward with gated residual, added into x in place in pieces of tokens whose
  //    inner activation is at most three of a batch item's hidden states (its q|k|v
  //    projection's size), so the FFN's 4-6x wider activation never sets the peak.
  ops::AddNorm r = norm3_->add_and_forward(x, y, {}, m.c_shift, m.c_scale);
  x = std::move(r.sum);
  y = {};
  ffn_->add_gated_to(x, r.normed, m.c_gate, 3 * x.size(1) * x.size(2));
  return emit(x);
}

// ---- condition embedder --------------------------------------------------------------

WanConditionEmbedder::WanConditionEmbedder(const WanArchConfig& c) : Module("WanTimeTextImageEmbedding") {
  const int64_t d = c.hidden_size;
  timesteps_proj_ = add_module<nn::Timesteps>("timesteps_proj", c.freq_dim, true, 0.0f);
  time_embedder_ = add_module<nn::TimestepEmbedding>("time_embedder", c.freq_dim, d, kFp32);
  act_fn_ = add_module<nn::ActivationModule>("act_fn", nn::Activation::SiLU);
  time_proj_ = add_module<nn::ReplicatedLinear>("time_proj", d, 6 * d);
  text_embedder_ = add_module<nn::PixArtAlphaTextProjection>("text_embedder", c.text_dim, d,
                                                             nn::Activation::GELUTanh);
  if (c.image_dim)
    image_embedder_ = add_module<WanImageEmbedding>("image_embedder", *c.image_dim, d, c.pos_embed_seq_len);
}

WanConditionEmbedder::Output WanConditionEmbedder::forward(const Tensor& timestep, const Tensor& text,
                                                           const Tensor& image, DType dtype) const {
  Output out;
  const bool per_token = timestep.dim() == 2;
  Tensor freq = timesteps_proj_->forward(timestep.reshape({-1}));
  if (per_token) freq = freq.reshape({timestep.size(0), timestep.size(1), -1});
  // The time embedder runs in its own (float32) dtype; temb is then rounded to the
  // context's dtype, as the reference does with type_as.
  out.temb = cast(time_embedder_->forward(cast(freq, time_embedder_->linear_1->weight->value.dtype())), dtype);
  out.timestep_proj = time_proj_->forward(act_fn_->forward(out.temb));
  out.context = text_embedder_->forward(text);
  if (image.defined()) {
    FASTDIT_CHECK(image_embedder_ != nullptr,
                  "encoder_hidden_states_image given, but this model has no image embedder (image_dim is null)");
    out.image_context = image_embedder_->forward(image);
  }
  emit(out.temb, "out[0]");
  emit(out.timestep_proj, "out[1]");
  emit(out.context, "out[2]");
  if (out.image_context.defined()) emit(out.image_context, "out[3]");
  return out;
}

// ---- model ---------------------------------------------------------------------------

WanTransformer3DModel::WanTransformer3DModel(WanArchConfig config, const BuildOptions& options)
    : DiTModel("WanTransformer3DModel"),
      config_(std::move(config)),
      parallel_(options.sequence_parallel ? *options.sequence_parallel : nn::single_process()) {
  const auto& c = config_;
  const int64_t d = c.hidden_size;
  rope_ = add_module<WanRotaryPosEmbed>("rope", c.attention_head_dim);
  patch_embedding_ = add_module<nn::PatchEmbed3d>("patch_embedding", c.in_channels, d, c.patch_size);
  condition_embedder_ = add_module<WanConditionEmbedder>("condition_embedder", c);
  blocks_ = add_module<nn::ModuleList>("blocks");
  for (int64_t i = 0; i < c.num_layers; ++i) blocks_->append<WanTransformerBlock>(c, options);
  norm_out_ = add_module<nn::LayerNorm>("norm_out", d, static_cast<float>(c.eps), false, kFp32);
  const int64_t patch_volume = c.patch_size[0] * c.patch_size[1] * c.patch_size[2];
  proj_out_ = add_module<nn::ReplicatedLinear>("proj_out", d, c.out_channels * patch_volume);
  scale_shift_table_ = add_parameter("scale_shift_table", {1, 2, d}, kFp32);
  mapping_ = original_wan_mapping();
  if (options.fuse_projections) mapping_.then(fused_projection_mapping());
}

ModelIO WanTransformer3DModel::io() const {
  ModelIO io;
  // timestep: [B], or [B, L] per token (Wan2.2 TI2V).
  io.tensors = {{"hidden_states", {5}, ElementKind::Floating, true, InputRole::Latents},
                {"timestep", {1, 2}, ElementKind::Number, true, InputRole::Timestep},
                {"encoder_hidden_states", {3}, ElementKind::Floating, true, InputRole::TextEmbeddings},
                {"encoder_hidden_states_image", {3}, ElementKind::Floating, config_.image_dim.has_value()}};
  io.outputs = {"sample"};
  return io;
}

Tensor WanTransformer3DModel::unpatchify(const Tensor& tokens, const Shape& latent) const {
  const auto& p = config_.patch_size;
  const int64_t b = latent[0], f = latent[2] / p[0], h = latent[3] / p[1], w = latent[4] / p[2];
  const Tensor grid = tokens.reshape({b, f, h, w, p[0], p[1], p[2], config_.out_channels});
  return ops::permute(grid, std::vector<int64_t>{0, 7, 1, 4, 2, 5, 3, 6})
      .reshape({b, config_.out_channels, latent[2], latent[3], latent[4]});
}

TensorMap WanTransformer3DModel::run(const TensorMap& inputs, const ArgMap&) {
  const auto& c = config_;
  const Tensor& latents = input_or_none(inputs, "hidden_states");
  const Tensor& timestep = input_or_none(inputs, "timestep");
  const Tensor& text = input_or_none(inputs, "encoder_hidden_states");
  const Tensor& image = input_or_none(inputs, "encoder_hidden_states_image");
  FASTDIT_CHECK(latents.defined() && timestep.defined() && text.defined(),
                "Wan needs inputs hidden_states, timestep and encoder_hidden_states");
  FASTDIT_CHECK(latents.dim() == 5 && latents.size(1) == c.in_channels, "hidden_states must be [B, ",
                c.in_channels, ", F, H, W], got ", latents.str());
  const int64_t batch = latents.size(0);
  for (int i = 0; i < 3; ++i)
    FASTDIT_CHECK(latents.size(2 + i) % c.patch_size[i] == 0, "hidden_states ", latents.str(),
                  ": frame/height/width must be multiples of patch_size [", c.patch_size[0], ", ",
                  c.patch_size[1], ", ", c.patch_size[2], "]");
  const Shape grid{latents.size(2) / c.patch_size[0], latents.size(3) / c.patch_size[1],
                   latents.size(4) / c.patch_size[2]};
  const int64_t tokens = shape_numel(grid);
  FASTDIT_CHECK((timestep.dim() == 1 && timestep.size(0) == batch) ||
                    (timestep.dim() == 2 && timestep.size(0) == batch && timestep.size(1) == tokens),
                "timestep must be [", batch, "] or per token [", batch, ", ", tokens, "], got ", timestep.str());
  FASTDIT_CHECK(text.dim() == 3 && text.size(0) == batch && text.size(2) == c.text_dim,
                "encoder_hidden_states must be [", batch, ", L, ", c.text_dim, "], got ", text.str());
  if (c.image_dim) {
    FASTDIT_CHECK(image.defined() && image.dim() == 3 && image.size(2) == *c.image_dim,
                  "this model (image_dim ", *c.image_dim, ") needs encoder_hidden_states_image [B, L, ",
                  *c.image_dim, "]", image.defined() ? ", got " + image.str() : std::string());
    FASTDIT_CHECK(text.size(1) == 512, "image-conditioned Wan splits its context at 512 text tokens; "
                  "encoder_hidden_states has ", text.size(1), " (pad the text embeddings to 512)");
  }

  const DType dtype = patch_embedding_->weight->value.dtype();
  const auto rope = static_cast<WanRotaryPosEmbed*>(rope_)->forward(grid, latents.device(), parallel_);
  Tensor x = patch_embedding_->forward(cast(latents, dtype));
  x = ops::transpose(x.reshape({batch, c.hidden_size, tokens}), 1, 2);
  // Sequence parallelism: from here to the gather every per-token tensor is this rank's
  // shard (per-token timesteps too); the rotary table stays whole for the attention.
  x = parallel_.shard_sequence(x, 1);
  const Tensor t = timestep.dim() == 2 ? parallel_.shard_sequence(timestep, 1) : timestep;
  const auto cond = condition_embedder_->forward(cast(t, DType::Float32), cast(text, dtype),
                                                 image.defined() ? cast(image, dtype) : Tensor{}, dtype);
  for (size_t i = 0; i < blocks_->size(); ++i)
    x = blocks_->at<WanTransformerBlock>(i)->forward(std::move(x), cond.context, cond.image_context,
                                                     cond.timestep_proj, rope);

  // Output head: shift and scale from temb (not timestep_proj), shift first.
  const bool per_token = cond.temb.dim() == 3;
  const Tensor table = per_token ? param(scale_shift_table_).unsqueeze(0) : param(scale_shift_table_);
  const Tensor mod = ops::add(table, cond.temb.unsqueeze(per_token ? 2 : 1));
  const int64_t axis = per_token ? 2 : 1;
  auto chunk = [&](int64_t i) {
    Tensor piece = mod.narrow(axis, i, 1);
    return per_token ? piece.squeeze(2) : piece;
  };
  x = norm_out_->forward_modulated(x, chunk(0), chunk(1), dtype);
  x = proj_out_->forward(x);
  // proj_out is per token, so gathering its output equals FastVideo's gather before it
  // and moves C·p_t·p_h·p_w channels per token instead of D.
  x = parallel_.gather_sequence(x, 1, tokens);
  return {{"sample", unpatchify(x, latents.shape())}};
}

TensorMap WanTransformer3DModel::example_inputs(const ExampleShape& s, uint64_t seed) const {
  const auto& c = config_;
  TensorMap inputs;
  inputs["hidden_states"] = ops::random_uniform({s.batch, c.in_channels, s.frames, s.height, s.width},
                                                DType::Float32, seed, -1.0f, 1.0f);
  inputs["timestep"] = ops::random_uniform({s.batch}, DType::Float32, seed + 1, 0.0f, 1000.0f);
  const int64_t text_len = c.image_dim ? 512 : s.text_len;  // I2V splits its context at 512
  inputs["encoder_hidden_states"] = ops::random_uniform({s.batch, text_len, c.text_dim}, DType::Float32,
                                                        seed + 2, -1.0f, 1.0f);
  if (c.image_dim) {
    const int64_t images = c.pos_embed_seq_len ? 2 * s.batch : s.batch;
    const int64_t tokens = c.pos_embed_seq_len ? *c.pos_embed_seq_len / 2 : 257;
    inputs["encoder_hidden_states_image"] =
        ops::random_uniform({images, tokens, *c.image_dim}, DType::Float32, seed + 3, -1.0f, 1.0f);
  }
  return inputs;
}

// ---- checkpoint layouts --------------------------------------------------------------

ParamNameMapping original_wan_mapping() {
  ParamNameMapping m;
  const std::string block = R"(blocks\.(\d+)\.)";
  const std::string wb = R"(\.(weight|bias)$)";
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"self_attn", "attn1"}, {"cross_attn", "attn2"}}) {
    m.rename("^" + block + from + R"(\.q)" + wb, "blocks.$1." + to + ".to_q.$2");
    m.rename("^" + block + from + R"(\.k)" + wb, "blocks.$1." + to + ".to_k.$2");
    m.rename("^" + block + from + R"(\.v)" + wb, "blocks.$1." + to + ".to_v.$2");
    m.rename("^" + block + from + R"(\.o)" + wb, "blocks.$1." + to + ".to_out.0.$2");
    m.rename("^" + block + from + R"(\.norm_(q|k)\.weight$)", "blocks.$1." + to + ".norm_$2.weight");
  }
  m.rename("^" + block + R"(cross_attn\.k_img)" + wb, "blocks.$1.attn2.add_k_proj.$2");
  m.rename("^" + block + R"(cross_attn\.v_img)" + wb, "blocks.$1.attn2.add_v_proj.$2");
  m.rename("^" + block + R"(cross_attn\.norm_k_img\.weight$)", "blocks.$1.attn2.norm_added_k.weight");
  m.rename("^" + block + R"(modulation$)", "blocks.$1.scale_shift_table");
  m.rename("^" + block + R"(norm3)" + wb, "blocks.$1.norm2.$2");
  m.rename("^" + block + R"(ffn\.0)" + wb, "blocks.$1.ffn.net.0.proj.$2");
  m.rename("^" + block + R"(ffn\.2)" + wb, "blocks.$1.ffn.net.2.$2");
  m.rename(R"(^text_embedding\.0)" + wb, "condition_embedder.text_embedder.linear_1.$1");
  m.rename(R"(^text_embedding\.2)" + wb, "condition_embedder.text_embedder.linear_2.$1");
  m.rename(R"(^time_embedding\.0)" + wb, "condition_embedder.time_embedder.linear_1.$1");
  m.rename(R"(^time_embedding\.2)" + wb, "condition_embedder.time_embedder.linear_2.$1");
  m.rename(R"(^time_projection\.1)" + wb, "condition_embedder.time_proj.$1");
  m.rename(R"(^img_emb\.proj\.0)" + wb, "condition_embedder.image_embedder.norm1.$1");
  m.rename(R"(^img_emb\.proj\.1)" + wb, "condition_embedder.image_embedder.ff.net.0.proj.$1");
  m.rename(R"(^img_emb\.proj\.3)" + wb, "condition_embedder.image_embedder.ff.net.2.$1");
  m.rename(R"(^img_emb\.proj\.4)" + wb, "condition_embedder.image_embedder.norm2.$1");
  m.rename(R"(^img_emb\.emb_pos$)", "condition_embedder.image_embedder.pos_embed");
  m.rename(R"(^head\.head)" + wb, "proj_out.$1");
  m.rename(R"(^head\.modulation$)", "scale_shift_table");
  return m;
}

ParamNameMapping fused_projection_mapping() {
  ParamNameMapping m;
  const std::string wb = R"(\.(weight|bias)$)";
  m.merge(R"(^(blocks\.\d+\.attn1)\.to_q)" + wb, "$1.to_qkv.$2", 0, 3);
  m.merge(R"(^(blocks\.\d+\.attn1)\.to_k)" + wb, "$1.to_qkv.$2", 1, 3);
  m.merge(R"(^(blocks\.\d+\.attn1)\.to_v)" + wb, "$1.to_qkv.$2", 2, 3);
  m.merge(R"(^(blocks\.\d+\.attn2)\.to_k)" + wb, "$1.to_kv.$2", 0, 2);
  m.merge(R"(^(blocks\.\d+\.attn2)\.to_v)" + wb, "$1.to_kv.$2", 1, 2);
  return m;
}

void register_models() {
  register_dit("WanTransformer3DModel", [](ConfigReader& config, const BuildOptions& options) {
    return std::make_unique<WanTransformer3DModel>(WanArchConfig::from_reader(config), options);
  });
  register_dit("WanModel", [](ConfigReader& config, const BuildOptions& options) {
    return std::make_unique<WanTransformer3DModel>(WanArchConfig::from_original_reader(config), options);
  });
}

}  // namespace fastdit::wan
