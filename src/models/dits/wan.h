// Wan 2.1 / 2.2 DiT (diffusers WanTransformer3DModel): T2V, I2V (image embedder and
// added K/V cross-attention), FLF2V (image position embedding), TI2V per-token
// timesteps. Module names and dtype casts follow the reference exactly.
#pragma once

#include "configs/wan_config.h"
#include "models/dit.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/rotary.h"

namespace fastdit::wan {

class WanAttention : public nn::Module {
 public:
  // options.fuse_projections: one GEMM for q|k|v (self-attention) or k|v (cross-attention);
  // options.sequence_parallel: the group self-attention exchanges tokens with.
  WanAttention(const WanArchConfig& config, bool cross_attention, const BuildOptions& options);
  // Self-attention when context is undefined (then rope applies); cross otherwise.
  // image_context (I2V) adds a second attention over image tokens. x by value: the fused
  // self-attention path drops it once projected, so a caller that moves it in frees it
  // before q, k and v exist.
  Tensor forward(Tensor x, const Tensor& context, const Tensor& image_context,
                 const nn::RotaryTable* rope) const;

 private:
  Tensor heads(const Tensor& t) const;  // [B, S, D] -> [B, S, H, dh]
  int64_t num_heads_;
  nn::ReplicatedLinear *to_q_ = nullptr, *to_k_ = nullptr, *to_v_ = nullptr, *to_out_;
  nn::ReplicatedLinear *to_qkv_ = nullptr, *to_kv_ = nullptr;
  nn::ActivationModule* out_dropout_;
  nn::RMSNorm *norm_q_ = nullptr, *norm_k_ = nullptr;
  nn::ReplicatedLinear *add_k_proj_ = nullptr, *add_v_proj_ = nullptr;
  nn::RMSNorm* norm_added_k_ = nullptr;
  nn::DistributedAttention self_attention_;
  nn::LocalAttention cross_attention_{"cross_attention"};
};

// The six modulation vectors of a block, float32, each [B, 1, D] or per token [B, L, D].
struct Modulation {
  Tensor shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate;
};

class WanTransformerBlock : public nn::Module {
 public:
  WanTransformerBlock(const WanArchConfig& config, const BuildOptions& options);
  // x by value: a caller that moves the hidden state in lets the block free it as soon
  // as the first residual add has replaced it.
  Tensor forward(Tensor x, const Tensor& context, const Tensor& image_context,
                 const Tensor& timestep_proj, const nn::RotaryTable& rope) const;

 private:
  Modulation modulation(const Tensor& timestep_proj) const;
  nn::LayerNorm *norm1_, *norm2_ = nullptr, *norm3_;
  WanAttention *attn1_, *attn2_;
  nn::FeedForward* ffn_;
  nn::Parameter* scale_shift_table_;
};

class WanConditionEmbedder : public nn::Module {
 public:
  explicit WanConditionEmbedder(const WanArchConfig& config);
  struct Output {
    Tensor temb;            // [B, D] or [B, L, D]
    Tensor timestep_proj;   // [B, 6D] or [B, L, 6D]
    Tensor context;         // [B, Lt, D]
    Tensor image_context;   // [B', Li, D] or undefined
  };
  // timestep [B] or [B, L] (per token); dtype is the run dtype of the model.
  Output forward(const Tensor& timestep, const Tensor& text, const Tensor& image,
                 DType dtype) const;

 private:
  nn::Timesteps* timesteps_proj_;
  nn::TimestepEmbedding* time_embedder_;
  nn::ActivationModule* act_fn_;
  nn::ReplicatedLinear* time_proj_;
  nn::PixArtAlphaTextProjection* text_embedder_;
  class WanImageEmbedding* image_embedder_ = nullptr;
};

class WanTransformer3DModel : public DiTModel {
 public:
  WanTransformer3DModel(WanArchConfig config, const BuildOptions& options);
  const DiTArchConfig& arch_config() const override { return config_; }
  const ParamNameMapping& param_names_mapping() const override { return mapping_; }
  ModelIO io() const override;
  TensorMap example_inputs(const ExampleShape& shape, uint64_t seed) const override;
  // Measured at 81x480x832 (bench/RESULTS.md): the 8-bit self-attention under precision fp8.
  bool allows_quantized_attention() const override { return true; }

 protected:
  TensorMap run(const TensorMap& inputs, const ArgMap& args) override;

 private:
  Tensor unpatchify(const Tensor& tokens, const Shape& latent_shape) const;
  WanArchConfig config_;
  ParamNameMapping mapping_;
  const nn::SequenceParallel& parallel_;
  nn::Module* rope_;
  nn::PatchEmbed3d* patch_embedding_;
  WanConditionEmbedder* condition_embedder_;
  nn::ModuleList* blocks_;
  nn::LayerNorm* norm_out_;
  nn::ReplicatedLinear* proj_out_;
  nn::Parameter* scale_shift_table_;
};

// Rules that map the original Wan checkpoint names onto the diffusers names.
ParamNameMapping original_wan_mapping();
// Rules that merge diffusers q/k/v (and cross-attention k/v) into fused projections.
ParamNameMapping fused_projection_mapping();

// Registers this family's class names with the model registry (models/builtin.cc).
void register_models();

}  // namespace fastdit::wan
