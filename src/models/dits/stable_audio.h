// Stable Audio Open DiT (diffusers StableAudioDiTModel): 1-D audio latents as tokens, a
// global conditioning token (duration embedding + timestep) prepended to them, pre-norm
// blocks of self-attention with partial RoPE, cross-attention to the text with grouped K/V
// heads and a SwiGLU feed-forward; no adaLN. Module names and dtype casts follow the
// reference exactly.
#pragma once

#include "configs/stable_audio_config.h"
#include "models/dit.h"
#include "nn/attention.h"
#include "nn/embeddings.h"
#include "nn/layers.h"
#include "nn/rotary.h"

namespace fastdit::stable_audio {

// diffusers Attention run by StableAudioAttnProcessor2_0, no biases. Self-attention rotates
// the first half of each head's q and k (split halves); cross-attention reads K/V heads of
// its own count (cross_attention_dim / head dim) without repeating them.
class StableAudioAttention : public nn::Module {
 public:
  // options.fuse_projections: one GEMM for self-attention's q|k|v (to_qkv) and for
  // cross-attention's k|v (to_kv), diffusers' fused names.
  StableAudioAttention(const StableAudioArchConfig& config, bool cross_attention, const BuildOptions& options);
  // Self-attention (context undefined): x [B, S, D] is this rank's shard of full_length
  // tokens, rope the full-sequence table; cross-attention: context [B, S_text,
  // cross_attention_dim], the same on every rank. key_mask (optional): Bool [B, keys].
  Tensor forward(const Tensor& x, const Tensor& context, const nn::RotaryTable* rope, int64_t full_length,
                 const Tensor& key_mask) const;

 private:
  Tensor heads(const Tensor& t, int64_t count) const;  // [B, S, count·dh] -> [B, S, count, dh]
  int64_t num_heads_, head_dim_;
  nn::ReplicatedLinear *to_q_ = nullptr, *to_k_ = nullptr, *to_v_ = nullptr;
  nn::ReplicatedLinear *to_qkv_ = nullptr, *to_kv_ = nullptr;
  nn::ReplicatedLinear* to_out_;
  nn::ActivationModule* out_dropout_;
  nn::DistributedAttention self_attention_;
  nn::LocalAttention cross_attention_{"cross_attention"};
};

// diffusers StableAudioDiTBlock: x + attn1(norm1(x)), + attn2(norm2(·), text), + ff(norm3(·)).
class StableAudioDiTBlock : public nn::Module {
 public:
  StableAudioDiTBlock(const StableAudioArchConfig& config, const BuildOptions& options);
  Tensor forward(const Tensor& x, const Tensor& context, const nn::RotaryTable& rope, int64_t full_length,
                 const Tensor& attention_mask, const Tensor& encoder_attention_mask) const;

 private:
  nn::LayerNorm* norm1_;
  StableAudioAttention* attn1_;
  nn::LayerNorm* norm2_;
  StableAudioAttention* attn2_;
  nn::LayerNorm* norm3_;
  nn::FeedForward* ff_;
};

class StableAudioDiTModel : public DiTModel {
 public:
  StableAudioDiTModel(StableAudioArchConfig config, const BuildOptions& options);
  const DiTArchConfig& arch_config() const override { return config_; }
  const ParamNameMapping& param_names_mapping() const override { return mapping_; }
  // Masks: bool [B, L] / [B, S], true = attend. The rotary table is built inside the model,
  // as the pipeline builds it from the latent length alone.
  ModelIO io() const override;
  // An audio model: the latent length is shape.width (frames and height must be 1);
  // shape.text_len text tokens, timestep [1] as the pipeline passes it.
  TensorMap example_inputs(const ExampleShape& shape, uint64_t seed) const override;

 protected:
  TensorMap run(const TensorMap& inputs, const ArgMap& args) override;

 private:
  StableAudioArchConfig config_;
  ParamNameMapping mapping_;
  const nn::SequenceParallel& parallel_;
  nn::RotaryTableCache rotary_tables_;
  nn::GaussianFourierProjection* time_proj_;
  nn::SequentialMLP* timestep_proj_;
  nn::SequentialMLP* global_proj_;
  nn::SequentialMLP* cross_attention_proj_;
  nn::PointwiseConv1d* preprocess_conv_;
  nn::ReplicatedLinear* proj_in_;
  nn::ModuleList* transformer_blocks_;
  nn::ReplicatedLinear* proj_out_;
  nn::PointwiseConv1d* postprocess_conv_;
};

// stable-audio-tools checkpoint names (the DiT under `model.model.`, fused to_qkv / to_kv,
// gamma / beta norms, timestep_features [F, 1]) onto the native ones: q|k|v and k|v split
// (or kept fused when the model fuses them), the rotary buffer ignored (the model builds its
// table). Diffusers names map to themselves, or merge into the fused projections.
ParamNameMapping stable_audio_mapping(const StableAudioArchConfig& config, bool fused);

// Registers this family's class names with the model registry (models/builtin.cc).
void register_models();

}  // namespace fastdit::stable_audio
