// LongCat-Video DiT (the official LongCatVideoTransformer3DModel, longcat_video/modules/):
// single-stream blocks of per-frame-modulated self-attention with per-head q/k RMS norm
// and 3-D RoPE, cross-attention to the caption tokens each sample has (varlen), and a
// bias-free SwiGLU; condition frames (num_cond_latents) that attend only to themselves; a
// K/V cache for video continuation. Module names, casts and the float32 islands follow the
// official code on CUDA, where torch.autocast(float32) runs the time embedder, every
// adaLN_modulation, the gated residual adds and the final layer in float32.
#pragma once

#include <array>
#include <vector>

#include "configs/longcat_config.h"
#include "models/dit.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/rotary.h"

namespace fastdit::longcat {

// The official RMSNorm_FP32 over each head's Dh values: normalised in float32, rounded to
// the input dtype, then times the weight in that dtype (two roundings in bfloat16).
class HeadRMSNorm : public nn::Module {
 public:
  HeadRMSNorm(int64_t head_dim, float eps);
  Tensor forward(const Tensor& x) const;  // x [..., Dh]
  float eps() const { return eps_; }
  nn::Parameter* weight;

 private:
  float eps_;
};

// Tokens of the latent grid and how this rank's shard of them maps onto frames.
struct Layout {
  int64_t batch = 0, frames = 0, frame_tokens = 0;  // frames x (H' x W') tokens
  int64_t tokens() const { return frames * frame_tokens; }
  // Under sequence parallelism a shard does not start at a frame boundary: per-frame
  // modulation is then expanded to this rank's tokens; with one process x is viewed as
  // [B, T, H'W', C] and the [B, T, 1, C] vectors broadcast over each frame.
  const nn::SequenceParallel* parallel = nullptr;
  bool sharded() const { return parallel->world_size() > 1; }
  Tensor frame_view(const Tensor& x) const;  // [B, S, C] -> [B, T, H'W', C] (one process) or itself
  Tensor per_frame(const Tensor& vector) const;  // [B, T, C] -> broadcastable to frame_view(x)
  // This rank's rows among the first `count` tokens of the sequence.
  int64_t local_rows_before(int64_t count, int64_t shard_rows) const;
};

// A block's cached keys and values (after the per-head norm, before RoPE), [B', S, H, Dh]
// in the run dtype; also what a return_kv forward gives back.
struct KVCache {
  Tensor k, v;
};

// The official Attention: fused qkv, per-head norms, 3-D RoPE, condition-frame split, K/V cache.
class LongCatAttention : public nn::Module {
 public:
  LongCatAttention(const LongcatArchConfig& config, const BuildOptions& options);
  struct Call {
    const nn::RotaryTable* rope;  // the full sequence's rows (after any cached frames)
    int64_t full_length;
    int64_t cond_tokens;           // isolated condition tokens (num_cond_latents x H'W')
    const Tensor* cache_k = nullptr;  // rotated cached keys [B, S_cache, H, Dh] and their values
    const Tensor* cache_v = nullptr;
    KVCache* returned = nullptr;  // return_kv: the normed, unrotated K/V of this sequence (gathered)
  };
  Tensor forward(const Tensor& x, const Call& call) const;

 private:
  int64_t heads_;
  nn::ReplicatedLinear *qkv_, *proj_;
  HeadRMSNorm *q_norm_, *k_norm_;
  nn::DistributedAttention attention_;
};

// The official MultiHeadCrossAttention: q from the tokens, fused k|v from the caption.
class LongCatCrossAttention : public nn::Module {
 public:
  explicit LongCatCrossAttention(const LongcatArchConfig& config);
  // Text keys: every sample's first key_lengths[b] tokens (key_mask undefined), or those a
  // Bool key_mask [B, N] marks.
  struct Text {
    Tensor y;  // [B, N, C] after y_embedder
    std::vector<int64_t> key_lengths;
    Tensor key_mask;
  };
  // The first skip_rows rows (condition tokens) get zeros, as the reference's do.
  Tensor forward(const Tensor& x, const Text& text, int64_t skip_rows) const;

 private:
  int64_t heads_;
  nn::ReplicatedLinear *q_linear_, *kv_linear_, *proj_;
  HeadRMSNorm *q_norm_, *k_norm_;
  nn::LocalAttention attention_{"cross_attention"};
};

// FeedForwardSwiGLU: w2(silu(w1 x) * w3 x), no biases. Fused (BuildOptions::fuse_projections):
// one GEMM of w13 = [w3 | w1] (the loader's merge mapping, ffn_fused_mapping) and one pass of
// ops::swiglu, which rounds silu(w1 x) to the run dtype before the product as the reference's
// separate ops do (the same numbers).
class SwiGLUFeedForward : public nn::Module {
 public:
  SwiGLUFeedForward(int64_t dim, int64_t hidden, bool fused);
  Tensor forward(const Tensor& x) const;

 private:
  nn::ReplicatedLinear *w1_ = nullptr, *w2_ = nullptr, *w3_ = nullptr, *w13_ = nullptr;
};

// SiLU then Linear(adaln_tembed_dim -> k·D) (the reference's nn.Sequential, names 0 and 1),
// computed in float32 from the float32 time embedding whatever the run dtype, as autocast
// runs it on CUDA: [B, T, k·D] float32.
class AdaLNModulation : public nn::ModuleList {
 public:
  AdaLNModulation(int64_t tembed_dim, int64_t out_features);
  Tensor forward(const Tensor& t) const;

 private:
  nn::ReplicatedLinear* linear_;
};

class LongCatSingleStreamBlock : public nn::Module {
 public:
  LongCatSingleStreamBlock(const LongcatArchConfig& config, const BuildOptions& options);
  struct Call {
    const Tensor* t;  // [B, T, adaln_tembed_dim] float32
    const LongCatCrossAttention::Text* text;
    const Layout* layout;
    LongCatAttention::Call attention;
    bool skip_cross_attention = false;
  };
  Tensor forward(const Tensor& x, const Call& call) const;

 private:
  AdaLNModulation* adaln_modulation_;  // -> 6D: shift, scale, gate (attention), shift, scale, gate (FFN)
  nn::LayerNorm *mod_norm_attn_, *mod_norm_ffn_, *pre_crs_attn_norm_;
  LongCatAttention* attn_;
  LongCatCrossAttention* cross_attn_;
  SwiGLUFeedForward* ffn_;
};

// PatchEmbed3D: Conv3d(kernel = stride = patch) as tokens [B, T'·H'·W', D], (t, h, w) order.
class PatchEmbed3D : public nn::Module {
 public:
  PatchEmbed3D(int64_t in_channels, int64_t dim, std::array<int64_t, 3> patch);
  Tensor forward(const Tensor& latents) const;
  nn::PatchEmbed3d* proj;
};

// TimestepEmbedder: [cos | sin] sinusoids (float32) -> Linear -> SiLU -> Linear (mlp.0, mlp.2),
// in float32 (autocast on CUDA): t [N] -> [N, adaln_tembed_dim] float32.
class TimestepEmbedder : public nn::Module {
 public:
  TimestepEmbedder(int64_t tembed_dim, int64_t frequency_embedding_size);
  Tensor forward(const Tensor& t) const;

 private:
  int64_t frequencies_;
  nn::SequentialMLP* mlp_;
};

// CaptionEmbedder: y_proj = Linear -> GELU(tanh) -> Linear, in the run dtype.
class CaptionEmbedder : public nn::Module {
 public:
  CaptionEmbedder(int64_t in_channels, int64_t dim);
  Tensor forward(const Tensor& caption) const;

 private:
  nn::SequentialMLP* y_proj_;
};

// FinalLayer_FP32: (shift, scale) from adaLN_modulation, the modulated norm rounded to the
// hidden state's dtype, then `linear` in float32: [B, S, patch volume·C_out] float32.
class FinalLayer : public nn::Module {
 public:
  FinalLayer(int64_t dim, int64_t patch_volume, int64_t out_channels, int64_t tembed_dim);
  Tensor forward(const Tensor& x, const Tensor& t, const Layout& layout) const;

 private:
  nn::LayerNorm* norm_final_;
  nn::ReplicatedLinear* linear_;
  AdaLNModulation* adaln_modulation_;
};

class LongCatVideoTransformer3DModel : public DiTModel {
 public:
  LongCatVideoTransformer3DModel(LongcatArchConfig config, const BuildOptions& options);
  const DiTArchConfig& arch_config() const override { return config_; }
  const ParamNameMapping& param_names_mapping() const override { return mapping_; }
  // hidden_states [B, C, T, H, W]; timestep [B] or per latent frame [B, T];
  // encoder_hidden_states [B, 1, N, C_text]; encoder_attention_mask [B, N] (optional);
  // kv_cache.<i>.k / .v [1 or B, H, S_cache, Dh] (optional, every block's: the cached
  // condition frames, with num_cond_latents = their frame count). Args num_cond_latents,
  // return_kv, skip_crs_attn. Heads: sample (float32), and with return_kv every block's
  // kv_cache.<i>.k / .v [B, H, S, Dh] in the run dtype.
  ModelIO io() const override;
  TensorMap example_inputs(const ExampleShape& shape, uint64_t seed) const override;
  // The 8-bit self-attention under precision fp8 (its forward measured against bf16: bench/RESULTS.md).
  bool allows_quantized_attention() const override { return true; }

 protected:
  TensorMap run(const TensorMap& inputs, const ArgMap& args) override;

 private:
  LongCatCrossAttention::Text embed_text(const Tensor& text, const Tensor& mask, DType dtype) const;
  LongcatArchConfig config_;
  ParamNameMapping mapping_;
  const nn::SequenceParallel& parallel_;
  nn::RotaryTableCache rotary_tables_;
  PatchEmbed3D* x_embedder_;
  TimestepEmbedder* t_embedder_;
  CaptionEmbedder* y_embedder_;
  nn::ModuleList* blocks_;
  FinalLayer* final_layer_;
};

// FastVideo's LongCat names (its native module tree, split q/k/v and k/v: patch_embed,
// time_embedder.linear_1, caption_embedder, adaln_linear_1, norm_cross, self_attn.to_q/k/v/
// to_out, cross_attn.to_q/k/v/to_out, final_layer.adaln_linear / proj) onto the official
// ones, the q/k/v and k/v pieces merged into attn.qkv and cross_attn.kv_linear. The
// official names (the dit/ folder) map to themselves.
ParamNameMapping fastvideo_mapping();
// The FFN's w3 and w1 merged into blocks.N.ffn.w13 (rows: w3, then w1), for fused builds.
ParamNameMapping ffn_fused_mapping();

// Registers this family's class names with the model registry (models/builtin.cc).
void register_models();

}  // namespace fastdit::longcat
