// Stable Diffusion 3 / 3.5 MMDiT (diffusers SD3Transformer2DModel): image tokens and text
// tokens run in two streams with their own weights and meet in one joint attention per
// block; SD3.5-medium adds a second, image-only attention to its first blocks. Module
// names and dtype casts follow the reference exactly.
#pragma once

#include "configs/sd3_config.h"
#include "models/dit.h"
#include "nn/adaptive_norm.h"
#include "nn/attention.h"
#include "nn/embeddings.h"
#include "nn/layers.h"

namespace fastdit::sd3 {

// diffusers Attention run by JointAttnProcessor2_0. Joint: the image stream (to_q/k/v,
// to_out) attends together with the text stream (add_q/k/v_proj, to_add_out unless
// context_pre_only), image tokens first. Otherwise (SD3.5's attn2) image-only self-attention.
class SD3Attention : public nn::Module {
 public:
  // options.fuse_projections: one GEMM per stream for q|k|v (to_qkv, to_added_qkv,
  // diffusers' fused names); options.sequence_parallel: the group the image tokens are
  // sharded over.
  SD3Attention(const SD3ArchConfig& config, bool joint, bool context_pre_only, const BuildOptions& options);
  struct Output {
    Tensor x;        // [B, N, D]
    Tensor context;  // [B, L, D]; without to_add_out (last block) the raw attention rows
  };
  // x [B, N, D] are the image tokens, which sequence parallelism shards (image_tokens: the
  // whole sequence's length); context [B, L, D] (joint only) is the same on every rank and
  // joins as replicated tokens.
  Output forward(const Tensor& x, const Tensor& context, int64_t image_tokens) const;

 private:
  // One stream's q, k, v as [B, S, H, dh]: three GEMMs or one fused, then the per-head norms.
  std::array<Tensor, 3> project(const Tensor& x, const nn::ReplicatedLinear* fused,
                                const std::array<nn::ReplicatedLinear*, 3>& separate, const nn::RMSNorm* norm_q,
                                const nn::RMSNorm* norm_k) const;
  Tensor merge_heads(const Tensor& t) const;  // [B, S, H, dh] -> [B, S, D]
  int64_t num_heads_;
  nn::RMSNorm *norm_q_ = nullptr, *norm_k_ = nullptr, *norm_added_q_ = nullptr, *norm_added_k_ = nullptr;
  nn::ReplicatedLinear* to_qkv_ = nullptr;
  std::array<nn::ReplicatedLinear*, 3> to_q_k_v_{};
  nn::ReplicatedLinear* to_added_qkv_ = nullptr;
  std::array<nn::ReplicatedLinear*, 3> add_q_k_v_proj_{};
  nn::ReplicatedLinear* to_out_;
  nn::ActivationModule* out_dropout_;
  nn::ReplicatedLinear* to_add_out_ = nullptr;
  nn::DistributedAttention attention_;
};

// diffusers JointTransformerBlock. The last block is context_pre_only: its text stream
// only feeds the attention (AdaLayerNormContinuous, no to_add_out, no ff_context).
class JointTransformerBlock : public nn::Module {
 public:
  JointTransformerBlock(const SD3ArchConfig& config, bool context_pre_only, bool dual_attention,
                        const BuildOptions& options);
  struct Output {
    Tensor context;  // undefined after a context_pre_only block
    Tensor x;
  };
  Output forward(const Tensor& x, const Tensor& context, const Tensor& temb, int64_t image_tokens) const;

 private:
  nn::AdaLayerNormZero* norm1_;
  nn::AdaLayerNormZero* norm1_context_ = nullptr;
  nn::AdaLayerNormContinuous* norm1_context_pre_only_ = nullptr;
  SD3Attention* attn_;
  SD3Attention* attn2_ = nullptr;
  nn::LayerNorm* norm2_;
  nn::FeedForward* ff_;
  nn::LayerNorm* norm2_context_ = nullptr;
  nn::FeedForward* ff_context_ = nullptr;
};

class SD3Transformer2DModel : public DiTModel {
 public:
  SD3Transformer2DModel(SD3ArchConfig config, const BuildOptions& options);
  const DiTArchConfig& arch_config() const override { return config_; }
  const ParamNameMapping& param_names_mapping() const override { return mapping_; }
  // skip_layers: the reference's list of block indices the forward passes over.
  ModelIO io() const override;
  // An image model: shape.frames must be 1.
  TensorMap example_inputs(const ExampleShape& shape, uint64_t seed) const override;

 protected:
  TensorMap run(const TensorMap& inputs, const ArgMap& args) override;

 private:
  Tensor unpatchify(const Tensor& tokens, int64_t height, int64_t width) const;
  SD3ArchConfig config_;
  ParamNameMapping mapping_;
  const nn::SequenceParallel& parallel_;
  nn::CroppedPatchEmbed* pos_embed_;
  nn::CombinedTimestepTextProjEmbeddings* time_text_embed_;
  nn::ReplicatedLinear* context_embedder_;
  nn::ModuleList* transformer_blocks_;
  nn::AdaLayerNormContinuous* norm_out_;
  nn::ReplicatedLinear* proj_out_;
};

// Rules that merge diffusers' to_q/k/v and add_q/k/v_proj into to_qkv and to_added_qkv.
ParamNameMapping fused_projection_mapping();

// Registers this family's class names with the model registry (models/builtin.cc).
void register_models();

}  // namespace fastdit::sd3
