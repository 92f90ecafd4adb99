#include "models/dits/longcat.h"

#include <algorithm>

namespace fastdit::longcat {

using ops::cast;

namespace {
constexpr float kEps = 1e-6f;

const Tensor& param(const nn::Parameter* p) {
  FASTDIT_CHECK(p->value.defined(), "parameter used before it was loaded");
  return p->value;
}

// A Linear computed in float32 from float32 inputs whatever its weights' dtype: what
// torch.autocast('cuda', float32) makes of a bfloat16 Linear (the weights' values are
// exact in float32, so this is the reference's product).
Tensor linear_float32(const nn::ReplicatedLinear& linear, const Tensor& x) {
  const Tensor bias = linear.bias ? cast(param(linear.bias), DType::Float32) : Tensor{};
  return ops::linear(cast(x, DType::Float32), cast(param(linear.weight), DType::Float32), bias);
}

// [B, S, H·Dh] <-> [B, S, H, Dh].
Tensor heads(const Tensor& t, int64_t count) { return t.reshape({t.size(0), t.size(1), count, -1}); }

// Every sample's keys repeated over the batch when the cache holds one sample.
Tensor batched(const Tensor& cache, int64_t batch) {
  if (cache.size(0) == batch) return cache;
  std::vector<Tensor> copies(static_cast<size_t>(batch), cache);
  return ops::concat(copies, 0);
}

std::vector<int64_t> axis_dims(int64_t head_dim) {
  const int64_t hw = 2 * (head_dim / 6);
  return {head_dim - 2 * hw, hw, hw};
}
}  // namespace

// ---- pieces --------------------------------------------------------------------------

HeadRMSNorm::HeadRMSNorm(int64_t head_dim, float eps) : Module("RMSNorm_FP32"), eps_(eps) {
  weight = add_parameter("weight", {head_dim});
}

Tensor HeadRMSNorm::forward(const Tensor& x) const {
  // `_norm(x.float()).type_as(x) * weight`: one pass when the weight has x's dtype.
  const Tensor& w = param(weight);
  if (w.dtype() == x.dtype()) return emit(ops::rms_norm(x, w, eps_, ops::Rounding::EachStep));
  return emit(ops::mul(ops::rms_norm(x, {}, eps_), w));
}

Tensor Layout::frame_view(const Tensor& x) const {
  return sharded() ? x : x.reshape({batch, frames, frame_tokens, x.size(-1)});
}

Tensor Layout::per_frame(const Tensor& vector) const {
  const Tensor frame = vector.unsqueeze(2);  // [B, T, 1, C]
  if (!sharded()) return frame;
  const Tensor tokens =
      ops::add(frame, Tensor::zeros({1, 1, frame_tokens, 1}, frame.dtype(), frame.device()));
  return parallel->shard_sequence(tokens.reshape({batch, this->tokens(), vector.size(-1)}), 1);
}

int64_t Layout::local_rows_before(int64_t count, int64_t shard_rows) const {
  return std::clamp<int64_t>(count - parallel->rank() * shard_rows, 0, shard_rows);
}

AdaLNModulation::AdaLNModulation(int64_t tembed_dim, int64_t out_features) {
  append<nn::ActivationModule>(nn::Activation::SiLU);
  linear_ = append<nn::ReplicatedLinear>(tembed_dim, out_features);
}

Tensor AdaLNModulation::forward(const Tensor& t) const {
  return emit(linear_float32(*linear_, ops::silu(cast(t, DType::Float32))));
}

PatchEmbed3D::PatchEmbed3D(int64_t in_channels, int64_t dim, std::array<int64_t, 3> patch) : Module("PatchEmbed3D") {
  proj = add_module<nn::PatchEmbed3d>("proj", in_channels, dim, patch);
}

Tensor PatchEmbed3D::forward(const Tensor& latents) const {
  const Tensor grid = proj->forward(latents);  // [B, D, T', H', W']
  const int64_t batch = grid.size(0), dim = grid.size(1);
  return emit(ops::transpose(grid.reshape({batch, dim, -1}), 1, 2));
}

TimestepEmbedder::TimestepEmbedder(int64_t tembed_dim, int64_t frequency_embedding_size)
    : Module("TimestepEmbedder"), frequencies_(frequency_embedding_size) {
  mlp_ = add_module<nn::SequentialMLP>("mlp", frequency_embedding_size, tembed_dim, tembed_dim, nn::Activation::SiLU,
                                       true);
}

Tensor TimestepEmbedder::forward(const Tensor& t) const {
  // freq_k = exp(-ln(10000) k / half), [cos | sin], float32.
  const Tensor frequencies = ops::timestep_embedding(t, frequencies_, true, 0.0f);
  return emit(linear_float32(*mlp_->linear_2, ops::silu(linear_float32(*mlp_->linear_1, frequencies))));
}

CaptionEmbedder::CaptionEmbedder(int64_t in_channels, int64_t dim) : Module("CaptionEmbedder") {
  y_proj_ = add_module<nn::SequentialMLP>("y_proj", in_channels, dim, dim, nn::Activation::GELUTanh, true);
}

Tensor CaptionEmbedder::forward(const Tensor& caption) const { return emit(y_proj_->forward(caption)); }

FinalLayer::FinalLayer(int64_t dim, int64_t patch_volume, int64_t out_channels, int64_t tembed_dim)
    : Module("FinalLayer_FP32") {
  norm_final_ = add_module<nn::LayerNorm>("norm_final", dim, kEps, false);
  linear_ = add_module<nn::ReplicatedLinear>("linear", dim, patch_volume * out_channels);
  adaln_modulation_ = add_module<AdaLNModulation>("adaLN_modulation", tembed_dim, 2 * dim);
}

Tensor FinalLayer::forward(const Tensor& x, const Tensor& t, const Layout& layout) const {
  const Tensor mod = adaln_modulation_->forward(t);  // shift, scale
  const int64_t d = x.size(-1);
  const Tensor shift = layout.per_frame(mod.narrow(-1, 0, d)), scale = layout.per_frame(mod.narrow(-1, d, d));
  const Tensor normed = norm_final_->forward_modulated(layout.frame_view(x), shift, scale, x.dtype());
  return emit(linear_float32(*linear_, normed.reshape(x.shape())));
}

// ---- attention -----------------------------------------------------------------------

LongCatAttention::LongCatAttention(const LongcatArchConfig& c, const BuildOptions& options)
    : Module("Attention"), heads_(c.num_attention_heads), attention_(options.sequence_parallel) {
  const int64_t d = c.hidden_size;
  qkv_ = add_module<nn::ReplicatedLinear>("qkv", d, 3 * d);
  q_norm_ = add_module<HeadRMSNorm>("q_norm", c.head_dim, kEps);
  k_norm_ = add_module<HeadRMSNorm>("k_norm", c.head_dim, kEps);
  proj_ = add_module<nn::ReplicatedLinear>("proj", d, d);
}

Tensor LongCatAttention::forward(const Tensor& x, const Call& call) const {
  const int64_t d = proj_->in_features();
  const Tensor qkv = qkv_->forward(x);  // [B, S, 3 | H | Dh]
  nn::DistributedAttention::Extras extras;
  extras.isolated_prefix = call.cond_tokens;
  if (call.cache_k) {
    extras.extra_k = *call.cache_k;
    extras.extra_v = *call.cache_v;
  }
  const Tensor& wq = param(q_norm_->weight);
  if (call.rope && !call.returned && call.rope->cos.size(0) == x.size(1) && wq.dtype() == qkv.dtype() &&
      param(k_norm_->weight).dtype() == qkv.dtype() && !q_norm_->has_forward_hooks() && !k_norm_->has_forward_hooks()) {
    // One process (the table's rows are this sequence's): the per-head norms and the
    // rotation in one pass from the projection (the same numbers as the modules in turn).
    const auto [q, k, v] = ops::qkv_norm_rope(qkv, wq, param(k_norm_->weight), q_norm_->eps(), heads_, call.rope->cos,
                                              call.rope->sin, ops::RopeStyle::Interleaved, ops::QkNorm::PerHead);
    const Tensor out =
        attention_.forward(q, k, v, call.full_length, nullptr, ops::RopeStyle::Interleaved, extras).out;
    return emit(proj_->forward(out.reshape({x.size(0), x.size(1), d})));
  }
  const Tensor q = q_norm_->forward(heads(qkv.narrow(-1, 0, d), heads_));
  const Tensor k = k_norm_->forward(heads(qkv.narrow(-1, d, d), heads_));
  const Tensor v = heads(qkv.narrow(-1, 2 * d, d), heads_);
  if (call.returned) {
    const Tensor parts[] = {k, v.contiguous()};
    auto full = attention_.parallel().gather_sequence(parts, 1, call.full_length);
    *call.returned = {full[0], full[1]};
  }
  const Tensor out =
      attention_.forward(q, k, v, call.full_length, call.rope, ops::RopeStyle::Interleaved, extras).out;
  return emit(proj_->forward(out.reshape({x.size(0), x.size(1), d})));
}

LongCatCrossAttention::LongCatCrossAttention(const LongcatArchConfig& c)
    : Module("MultiHeadCrossAttention"), heads_(c.num_attention_heads) {
  const int64_t d = c.hidden_size;
  q_linear_ = add_module<nn::ReplicatedLinear>("q_linear", d, d);
  kv_linear_ = add_module<nn::ReplicatedLinear>("kv_linear", d, 2 * d);
  proj_ = add_module<nn::ReplicatedLinear>("proj", d, d);
  q_norm_ = add_module<HeadRMSNorm>("q_norm", c.head_dim, kEps);
  k_norm_ = add_module<HeadRMSNorm>("k_norm", c.head_dim, kEps);
}

Tensor LongCatCrossAttention::forward(const Tensor& x, const Text& text, int64_t skip_rows) const {
  const int64_t d = proj_->in_features(), rows = x.size(1) - skip_rows;
  Tensor out;
  if (rows > 0) {
    const Tensor queries = skip_rows > 0 ? x.narrow(1, skip_rows, rows) : x;
    const Tensor q = q_norm_->forward(heads(q_linear_->forward(queries), heads_));
    const Tensor kv = kv_linear_->forward(text.y);  // k the first D outputs, v the next D
    const Tensor k = k_norm_->forward(heads(kv.narrow(-1, 0, d), heads_));
    const Tensor v = heads(kv.narrow(-1, d, d), heads_);
    const Tensor attended = text.key_mask.defined() ? attention_.forward(q, k, v, nullptr,
                                                                         ops::RopeStyle::Interleaved, text.key_mask)
                                                    : attention_.forward_varlen(q, k, v, text.key_lengths);
    out = proj_->forward(attended.reshape({x.size(0), rows, d}));
  }
  if (skip_rows > 0) {
    const Tensor zeros = Tensor::zeros({x.size(0), skip_rows, d}, x.dtype(), x.device());
    if (rows > 0) {
      const Tensor parts[] = {zeros, out};
      out = ops::concat(parts, 1);
    } else {
      out = zeros;
    }
  }
  return emit(out);
}

SwiGLUFeedForward::SwiGLUFeedForward(int64_t dim, int64_t hidden, bool fused) : Module("FeedForwardSwiGLU") {
  if (fused) {
    w13_ = add_module<nn::ReplicatedLinear>("w13", dim, 2 * hidden, false);
  } else {
    w1_ = add_module<nn::ReplicatedLinear>("w1", dim, hidden, false);
  }
  w2_ = add_module<nn::ReplicatedLinear>("w2", hidden, dim, false);
  if (!fused) w3_ = add_module<nn::ReplicatedLinear>("w3", dim, hidden, false);
}

Tensor SwiGLUFeedForward::forward(const Tensor& x) const {
  // swiglu takes [value | gate]: w3 x first, w1 x second.
  if (w13_) return emit(w2_->forward(ops::swiglu(w13_->forward(x))));
  return emit(w2_->forward(ops::mul(ops::silu(w1_->forward(x)), w3_->forward(x))));
}

// ---- block ---------------------------------------------------------------------------

LongCatSingleStreamBlock::LongCatSingleStreamBlock(const LongcatArchConfig& c, const BuildOptions& options)
    : Module("LongCatSingleStreamBlock") {
  const int64_t d = c.hidden_size;
  adaln_modulation_ = add_module<AdaLNModulation>("adaLN_modulation", c.adaln_tembed_dim, 6 * d);
  mod_norm_attn_ = add_module<nn::LayerNorm>("mod_norm_attn", d, kEps, false);
  mod_norm_ffn_ = add_module<nn::LayerNorm>("mod_norm_ffn", d, kEps, false);
  pre_crs_attn_norm_ = add_module<nn::LayerNorm>("pre_crs_attn_norm", d, kEps, true);
  attn_ = add_module<LongCatAttention>("attn", c, options);
  cross_attn_ = add_module<LongCatCrossAttention>("cross_attn", c);
  ffn_ = add_module<SwiGLUFeedForward>("ffn", d, c.ffn_hidden, options.fuse_projections);
  // Under precision fp8: the self- and cross-attention projections and the FFN, not the
  // adaLN modulation (computed in float32, as the reference's autocast does).
  for (nn::Module* part : std::initializer_list<nn::Module*>{attn_, cross_attn_, ffn_}) nn::allow_fp8_linears(*part);
}

Tensor LongCatSingleStreamBlock::forward(const Tensor& input, const Call& call) const {
  const Layout& layout = *call.layout;
  const DType dtype = input.dtype();
  const int64_t d = input.size(-1);
  // Per latent frame, float32: shift, scale, gate for attention, then for the FFN.
  const Tensor mod = adaln_modulation_->forward(*call.t);
  auto piece = [&](int64_t i) { return layout.per_frame(mod.narrow(-1, i * d, d)); };
  const auto view = [&](const Tensor& t) { return layout.frame_view(t); };
  const auto back = [&](const Tensor& t) { return t.reshape(input.shape()); };

  // Modulated norm and each gated residual in float32, rounded once to the run dtype. Each
  // residual add runs fused with the norm after it (ops::add_layer_norm: the same numbers).
  Tensor x = back(mod_norm_attn_->forward_modulated(view(input), piece(0), piece(1), dtype));
  Tensor y = attn_->forward(x, call.attention);
  Tensor normed;
  if (!call.skip_cross_attention) {
    ops::AddNorm r = pre_crs_attn_norm_->add_and_forward(view(input), view(y), piece(2));
    x = back(r.sum);
    y = {};
    // Condition tokens (cond mode without a cache) get no cross-attention; ungated residual
    // in the run dtype, added in front of the FFN's norm.
    const int64_t skip = call.attention.cache_k ? 0 : layout.local_rows_before(call.attention.cond_tokens, x.size(1));
    const Tensor crossed = cross_attn_->forward(back(r.normed), *call.text, skip);
    r = mod_norm_ffn_->add_and_forward(view(x), view(crossed), {}, piece(3), piece(4));
    x = back(r.sum);
    normed = back(r.normed);
  } else {
    x = back(ops::gated_add(view(input), view(y), piece(2), dtype));
    normed = back(mod_norm_ffn_->forward_modulated(view(x), piece(3), piece(4), dtype));
  }
  y = ffn_->forward(normed);
  return emit(back(ops::gated_add(view(x), view(y), piece(5), dtype)));
}

// ---- model ---------------------------------------------------------------------------

LongCatVideoTransformer3DModel::LongCatVideoTransformer3DModel(LongcatArchConfig config, const BuildOptions& options)
    : DiTModel("LongCatVideoTransformer3DModel"),
      config_(std::move(config)),
      parallel_(options.sequence_parallel ? *options.sequence_parallel : nn::single_process()),
      // rope_3d: float32 frequencies 1 / 10000^(2j/d) and angles, pairs interleaved.
      rotary_tables_(axis_dims(config_.head_dim), 10000.0, ops::RopeStyle::Interleaved, nn::AnglePrecision::Float32) {
  const auto& c = config_;
  const int64_t d = c.hidden_size;
  x_embedder_ = add_module<PatchEmbed3D>("x_embedder", c.in_channels, d, c.patch_size);
  t_embedder_ = add_module<TimestepEmbedder>("t_embedder", c.adaln_tembed_dim, c.frequency_embedding_size);
  y_embedder_ = add_module<CaptionEmbedder>("y_embedder", c.caption_channels, d);
  blocks_ = add_module<nn::ModuleList>("blocks");
  for (int64_t i = 0; i < c.depth; ++i) blocks_->append<LongCatSingleStreamBlock>(c, options);
  const int64_t patch_volume = c.patch_size[0] * c.patch_size[1] * c.patch_size[2];
  final_layer_ = add_module<FinalLayer>("final_layer", d, patch_volume, c.out_channels, c.adaln_tembed_dim);
  mapping_ = fastvideo_mapping();
  if (options.fuse_projections) mapping_.extend(ffn_fused_mapping());
}

ModelIO LongCatVideoTransformer3DModel::io() const {
  ModelIO io;
  io.tensors = {{"hidden_states", {5}, ElementKind::Floating, true, InputRole::Latents},
                {"timestep", {1, 2}, ElementKind::Number, true, InputRole::Timestep},
                {"encoder_hidden_states", {4}, ElementKind::Floating, true, InputRole::TextEmbeddings},
                {"encoder_attention_mask", {2}, ElementKind::Number, false}};
  for (int64_t i = 0; i < config_.depth; ++i)
    for (const char* kv : {"k", "v"}) {
      const std::string name = "kv_cache." + std::to_string(i) + "." + kv;
      io.tensors.push_back({name, {4}, ElementKind::Floating, false});
      io.optional_outputs.push_back(name);
    }
  io.args = {{"num_cond_latents", ArgType::Int, ArgValue{int64_t{0}}},
             {"return_kv", ArgType::Bool, ArgValue{false}},
             {"skip_crs_attn", ArgType::Bool, ArgValue{false}},
             {"offload_kv_cache", ArgType::Bool, ArgValue{false}}};
  io.outputs = {"sample"};
  return io;
}

LongCatCrossAttention::Text LongCatVideoTransformer3DModel::embed_text(const Tensor& text, const Tensor& mask,
                                                                        DType dtype) const {
  const int64_t batch = text.size(0), tokens = text.size(2);
  LongCatCrossAttention::Text out;
  Tensor y = y_embedder_->forward(cast(text, dtype));  // [B, 1, N, D]
  out.key_lengths.assign(static_cast<size_t>(batch), tokens);
  if (mask.defined()) {
    FASTDIT_CHECK(mask.dim() == 2 && mask.size(0) == batch && mask.size(1) == tokens,
                  "encoder_attention_mask must be [", batch, ", ", tokens, "], got ", mask.str());
    const Tensor host = mask.to(Device::cpu(), DType::Float32).contiguous();
    const float* m = host.data<float>();
    if (config_.text_tokens_zero_pad) {
      // Masked tokens are zeroed after the caption MLP, and then every token is attended.
      y = ops::mul(y, cast(host.reshape({batch, 1, tokens, 1}), dtype).to(y.device()));
    } else {
      // Each sample attends to its valid tokens: the first L_b (varlen, as the reference
      // packs them), or where they are not a prefix, those the mask marks.
      bool prefix = true;
      for (int64_t b = 0; b < batch; ++b) {
        int64_t length = 0;
        while (length < tokens && m[b * tokens + length] != 0.0f) ++length;
        for (int64_t j = length; j < tokens; ++j) prefix = prefix && m[b * tokens + j] == 0.0f;
        out.key_lengths[static_cast<size_t>(b)] = length;
      }
      if (!prefix) {
        Tensor keys = Tensor::empty({batch, tokens}, DType::Bool);
        auto* flags = static_cast<uint8_t*>(keys.data_ptr());
        for (int64_t j = 0; j < batch * tokens; ++j) flags[j] = m[j] != 0.0f;
        out.key_mask = keys.to(y.device());
      }
    }
  }
  out.y = y.reshape({batch, tokens, y.size(-1)});
  return out;
}

TensorMap LongCatVideoTransformer3DModel::run(const TensorMap& inputs, const ArgMap& args) {
  const auto& c = config_;
  const Tensor& latents = input_or_none(inputs, "hidden_states");
  const Tensor& timestep_in = input_or_none(inputs, "timestep");
  const Tensor& text = input_or_none(inputs, "encoder_hidden_states");
  FASTDIT_CHECK(latents.size(1) == c.in_channels, "hidden_states must be [B, ", c.in_channels, ", T, H, W], got ",
                latents.str());
  const int64_t batch = latents.size(0);
  // The reference pads H and W on the far side to patch multiples, but takes its token grid
  // (and RoPE table) from the unpadded sizes, so only multiples run there.
  for (int i = 1; i < 3; ++i)
    FASTDIT_CHECK(latents.size(2 + i) % c.patch_size[i] == 0, "hidden_states ", latents.str(),
                  ": height and width must be multiples of patch_size [", c.patch_size[1], ", ", c.patch_size[2],
                  "] (the reference pads them but builds its token grid from the unpadded size, so other sizes "
                  "fail there)");
  Layout layout{batch, latents.size(2), (latents.size(3) / c.patch_size[1]) * (latents.size(4) / c.patch_size[2]),
                &parallel_};
  const int64_t tokens = layout.tokens();
  FASTDIT_CHECK((timestep_in.dim() == 1 && timestep_in.size(0) == batch) ||
                    (timestep_in.dim() == 2 && timestep_in.size(0) == batch && timestep_in.size(1) == layout.frames),
                "timestep must be [", batch, "] or per latent frame [", batch, ", ", layout.frames, "], got ",
                timestep_in.str());
  FASTDIT_CHECK(text.size(0) == batch && text.size(1) == 1 && text.size(3) == c.caption_channels,
                "encoder_hidden_states must be [", batch, ", 1, N, ", c.caption_channels, "], got ", text.str());
  const int64_t num_cond_latents = arg_int(args, "num_cond_latents");
  const bool return_kv = arg_bool(args, "return_kv"), skip_cross = arg_bool(args, "skip_crs_attn");
  FASTDIT_CHECK(num_cond_latents >= 0 && num_cond_latents <= layout.frames, "num_cond_latents ", num_cond_latents,
                " must be within the ", layout.frames, " latent frames");

  // The K/V cache of condition frames (video continuation): every block's or none.
  const std::string cache0 = "kv_cache.0.k";
  const bool cached = input_or_none(inputs, cache0).defined();
  std::vector<KVCache> cache;
  if (cached) {
    FASTDIT_CHECK(!return_kv, "return_kv with a kv_cache: the reference returns no cache from a cached forward");
    FASTDIT_CHECK(num_cond_latents > 0, "a kv_cache needs num_cond_latents = the cached frames' count (the "
                  "reference places the new frames after them)");
  }
  for (int64_t i = 0; i < c.depth; ++i) {
    const std::string prefix = "kv_cache." + std::to_string(i) + ".";
    const Tensor &k = input_or_none(inputs, prefix + "k"), &v = input_or_none(inputs, prefix + "v");
    FASTDIT_CHECK(k.defined() == cached && v.defined() == cached, "kv_cache: give every block's k and v (",
                  prefix, "k / ", prefix, "v) or none");
    if (!cached) continue;
    const int64_t cache_tokens = num_cond_latents * layout.frame_tokens;
    for (const Tensor* t : {&k, &v})
      FASTDIT_CHECK(t->size(1) == c.num_attention_heads && t->size(2) == cache_tokens && t->size(3) == c.head_dim &&
                        (t->size(0) == 1 || t->size(0) == batch) && t->shape() == k.shape(),
                    prefix, "k / v must be [1 or ", batch, ", ", c.num_attention_heads, ", ", cache_tokens, ", ",
                    c.head_dim, "] (num_cond_latents ", num_cond_latents, " frames of ", layout.frame_tokens,
                    " tokens), got ", t->str());
    cache.push_back({k, v});
  }

  const DType dtype = x_embedder_->proj->weight->value.dtype();
  // The timestep is rounded to the model dtype, then embedded in float32: [B, T, C_t].
  Tensor timestep = cast(cast(timestep_in, dtype), DType::Float32);
  if (timestep.dim() == 1)
    timestep = ops::add(timestep.unsqueeze(1), Tensor::zeros({1, layout.frames}, DType::Float32, timestep.device()));
  const Tensor t = t_embedder_->forward(timestep.reshape({-1})).reshape({batch, layout.frames, -1});
  const LongCatCrossAttention::Text context = embed_text(text, input_or_none(inputs, "encoder_attention_mask"), dtype);

  // RoPE over the frames after the cached ones: the table of the whole (cached + new) grid.
  const int64_t cached_frames = cached ? num_cond_latents : 0, cached_tokens = cached_frames * layout.frame_tokens;
  const Shape grid{cached_frames + layout.frames, latents.size(3) / c.patch_size[1], latents.size(4) / c.patch_size[2]};
  const nn::RotaryTable& table = rotary_tables_.get(grid, latents.device(), nn::single_process());
  nn::RotaryTable rope{table.cos.narrow(0, cached_tokens, tokens), table.sin.narrow(0, cached_tokens, tokens), {}, {}};
  std::vector<Tensor> cache_k(cache.size()), cache_v(cache.size());
  for (size_t i = 0; i < cache.size(); ++i) {
    const Tensor k = batched(ops::transpose(cast(cache[i].k, dtype), 1, 2), batch);  // [B, S_cache, H, Dh]
    cache_k[i] = ops::rope(k, table.cos.narrow(0, 0, cached_tokens), table.sin.narrow(0, 0, cached_tokens),
                           ops::RopeStyle::Interleaved);
    cache_v[i] = batched(ops::transpose(cast(cache[i].v, dtype), 1, 2), batch);
  }

  Tensor x = x_embedder_->forward(cast(latents, dtype));
  // Sequence parallelism: from here to the gather the blocks see this rank's token shard.
  x = parallel_.shard_sequence(x, 1);
  std::vector<KVCache> returned(return_kv ? static_cast<size_t>(c.depth) : 0);
  for (size_t i = 0; i < blocks_->size(); ++i) {
    LongCatSingleStreamBlock::Call call{&t, &context, &layout, {&rope, tokens, cached ? 0 : num_cond_latents * layout.frame_tokens}, skip_cross};
    if (cached) {
      call.attention.cache_k = &cache_k[i];
      call.attention.cache_v = &cache_v[i];
    }
    if (return_kv) call.attention.returned = &returned[i];
    x = blocks_->at<LongCatSingleStreamBlock>(i)->forward(x, call);
  }
  x = final_layer_->forward(x, t, layout);
  // The final linear is per token, so gathering its output equals gathering before it.
  x = parallel_.gather_sequence(x, 1, tokens);

  // Unpatchify: [B, (T' H' W'), (pt ph pw C)] -> [B, C, T, H, W], channel fastest.
  const auto& p = c.patch_size;
  const Tensor patches = x.reshape({batch, grid[0] - cached_frames, grid[1], grid[2], p[0], p[1], p[2], c.out_channels});
  TensorMap out{{"sample", cast(ops::permute(patches, std::vector<int64_t>{0, 7, 1, 4, 2, 5, 3, 6})
                                    .reshape({batch, c.out_channels, latents.size(2), latents.size(3), latents.size(4)}),
                                DType::Float32)}};
  for (size_t i = 0; i < returned.size(); ++i) {  // the reference's [B, H, S, Dh]
    out["kv_cache." + std::to_string(i) + ".k"] = ops::transpose(returned[i].k, 1, 2);
    out["kv_cache." + std::to_string(i) + ".v"] = ops::transpose(returned[i].v, 1, 2);
  }
  return out;
}

TensorMap LongCatVideoTransformer3DModel::example_inputs(const ExampleShape& s, uint64_t seed) const {
  const auto& c = config_;
  TensorMap inputs;
  inputs["hidden_states"] = ops::random_uniform({s.batch, c.in_channels, s.frames, s.height, s.width}, DType::Float32,
                                                seed, -1.0f, 1.0f);
  inputs["timestep"] = ops::random_uniform({s.batch}, DType::Float32, seed + 1, 0.0f, 1000.0f);
  inputs["encoder_hidden_states"] =
      ops::random_uniform({s.batch, 1, s.text_len, c.caption_channels}, DType::Float32, seed + 2, -1.0f, 1.0f);
  return inputs;
}

// ---- checkpoint layouts --------------------------------------------------------------

ParamNameMapping fastvideo_mapping() {
  ParamNameMapping m;
  const std::string wb = R"(\.(weight|bias)$)", block = R"(^blocks\.(\d+)\.)", to = "blocks.$1.";
  m.rename(R"(^patch_embed\.proj)" + wb, "x_embedder.proj.$1");
  m.rename(R"(^time_embedder\.linear_1)" + wb, "t_embedder.mlp.0.$1");
  m.rename(R"(^time_embedder\.linear_2)" + wb, "t_embedder.mlp.2.$1");
  m.rename(R"(^caption_embedder\.linear_1)" + wb, "y_embedder.y_proj.0.$1");
  m.rename(R"(^caption_embedder\.linear_2)" + wb, "y_embedder.y_proj.2.$1");
  m.rename(block + "adaln_linear_1" + wb, to + "adaLN_modulation.1.$2");
  m.rename(block + "norm_cross" + wb, to + "pre_crs_attn_norm.$2");
  const char* qkv[] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i) m.merge(block + R"(self_attn\.to_)" + qkv[i] + wb, to + "attn.qkv.$2", i, 3);
  m.rename(block + R"(self_attn\.to_out)" + wb, to + "attn.proj.$2");
  m.rename(block + R"(self_attn\.(q_norm|k_norm)\.weight$)", to + "attn.$2.weight");
  m.rename(block + R"(cross_attn\.to_q)" + wb, to + "cross_attn.q_linear.$2");
  for (int i = 0; i < 2; ++i) m.merge(block + R"(cross_attn\.to_)" + qkv[i + 1] + wb, to + "cross_attn.kv_linear.$2", i, 2);
  m.rename(block + R"(cross_attn\.to_out)" + wb, to + "cross_attn.proj.$2");
  m.rename(R"(^final_layer\.adaln_linear)" + wb, "final_layer.adaLN_modulation.1.$1");
  m.rename(R"(^final_layer\.proj)" + wb, "final_layer.linear.$1");
  return m;
}

ParamNameMapping ffn_fused_mapping() {
  ParamNameMapping m;
  m.merge(R"(^(blocks\.\d+\.ffn)\.w3\.weight$)", "$1.w13.weight", 0, 2);
  m.merge(R"(^(blocks\.\d+\.ffn)\.w1\.weight$)", "$1.w13.weight", 1, 2);
  return m;
}

void register_models() {
  register_dit("LongCatVideoTransformer3DModel", [](ConfigReader& config, const BuildOptions& options) {
    return std::make_unique<LongCatVideoTransformer3DModel>(LongcatArchConfig::from_reader(config), options);
  });
}

}  // namespace fastdit::longcat
