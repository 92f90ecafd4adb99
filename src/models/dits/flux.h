// Flux.1 (diffusers FluxTransformer2DModel; FLUX.1-dev and -schnell): double-stream blocks
// where the text and image tokens keep their own weights and meet in one joint attention
// (text first), then single-stream blocks over the joined sequence whose attention and MLP
// run in parallel and share one output projection. Positions come in as ids (one row per
// token, one column per rotary axis) and become one RoPE table over the joint sequence.
// Latents stay packed: [B, N, C·p²] in and out. Module names and dtype casts follow the
// reference exactly.
#pragma once

#include <tuple>

#include "configs/flux_config.h"
#include "models/dit.h"
#include "nn/adaptive_norm.h"
#include "nn/attention.h"
#include "nn/embeddings.h"
#include "nn/layers.h"

namespace fastdit::flux {

// The RoPE table of the joint sequence [text; image] and its two parts.
struct JointRotary {
  nn::RotaryTable text;   // rows of the text tokens
  nn::RotaryTable image;  // rows of the image tokens
  nn::RotaryTable joint;  // the whole table: the text rows, then the image rows
};

// diffusers FluxPosEmbed (theta 10000, interleaved pairs): a parameter-free module that
// turns cat(txt_ids, img_ids) into the table. It depends on the ids' values only, so it
// is built once per ids and device and kept (a denoising loop asks for the same one every
// step, and a captured forward must find it where it was).
class FluxPosEmbed : public nn::Module {
 public:
  explicit FluxPosEmbed(std::vector<int64_t> axes_dim) : Module("FluxPosEmbed"), axes_dim_(std::move(axes_dim)) {}
  // txt_ids [L, A], img_ids [N, A] (A = the number of axes).
  JointRotary forward(const Tensor& txt_ids, const Tensor& img_ids, Device device) const;

 private:
  std::vector<int64_t> axes_dim_;
  using Key = std::tuple<std::vector<float>, int64_t, DeviceType, int>;  // ids, text rows, device
  mutable std::map<Key, nn::RotaryTable> cached_;
};

// diffusers FluxAttention run by FluxAttnProcessor: per-head RMS norms on q and k, the text
// tokens first in the joint sequence, RoPE over all of it. Joint (double-stream blocks):
// the image stream projects through to_q/k/v and to_out, the text stream through
// add_q/k/v_proj and to_add_out. Otherwise (single-stream blocks, pre_only) one set of
// projections serves the joined sequence and there is no output projection.
//
// options.fuse_projections: one GEMM per stream for q|k|v (to_qkv, to_added_qkv, diffusers'
// fused names) in the double-stream blocks; the single-stream block projects q|k|v|mlp_in
// itself in one GEMM (Black Forest Labs' linear1) and hands this attention its q|k|v.
class FluxAttention : public nn::Module {
 public:
  FluxAttention(const FluxArchConfig& config, bool joint, const BuildOptions& options);
  struct Output {
    Tensor x;        // [B, N, D] image tokens
    Tensor context;  // [B, L, D] text tokens
  };
  // Joint: x [B, N_local, D] the image tokens (sequence parallelism shards them;
  // image_tokens is the whole sequence's count), context [B, L, D] the text tokens.
  Output forward(const Tensor& x, const Tensor& context, const JointRotary& rope, int64_t image_tokens) const;
  // Single stream: joined [B, L + N_local, D], text rows first -> the attention's rows
  // [B, L + N_local, D] (heads merged, no projection). Fused: `joined` is the block's
  // q|k|v projection [B, L + N_local, 3D] instead.
  Tensor forward_joined(const Tensor& joined, int64_t text_tokens, const JointRotary& rope,
                        int64_t image_tokens) const;

 private:
  struct Heads {
    Tensor q, k, v;  // [B, S, H, dh], q and k normalised
  };
  // Three GEMMs, or one fused GEMM's (or a given) [B, S, 3D] output split in thirds.
  Heads project(const Tensor& x, const nn::ReplicatedLinear* fused, const std::array<nn::ReplicatedLinear*, 3>& qkv,
                const nn::RMSNorm* norm_q, const nn::RMSNorm* norm_k) const;
  // Text heads rotated with their rows here (they join as replicated tokens, which the
  // attention layer does not rotate), image heads with theirs inside the attention.
  nn::DistributedAttention::Output attend(const Heads& image, const Heads& text, const JointRotary& rope,
                                          int64_t image_tokens) const;
  // Whether a fused projection's q|k|v goes through ops::qkv_norm_rope (the per-head norms
  // and the rotation in one pass, the numbers of the modules in turn): one process (the
  // tables' rows are this sequence's) and no hook wanting the norms' own outputs.
  bool one_pass(const nn::RMSNorm* norm_q, const nn::RMSNorm* norm_k) const;
  // qkv [B, S, 3D] (rows evenly spaced) -> normalised and rotated heads, v as is.
  Heads norm_rope(const Tensor& qkv, const nn::RMSNorm* norm_q, const nn::RMSNorm* norm_k,
                  const nn::RotaryTable& table) const;
  int64_t num_heads_;
  nn::RMSNorm *norm_q_, *norm_k_, *norm_added_q_ = nullptr, *norm_added_k_ = nullptr;
  bool fused_;
  nn::ReplicatedLinear* to_qkv_ = nullptr;
  std::array<nn::ReplicatedLinear*, 3> to_q_k_v_{};
  nn::ReplicatedLinear* to_added_qkv_ = nullptr;
  std::array<nn::ReplicatedLinear*, 3> add_q_k_v_proj_{};
  nn::ReplicatedLinear* to_out_ = nullptr;
  nn::ActivationModule* out_dropout_ = nullptr;
  nn::ReplicatedLinear* to_add_out_ = nullptr;
  nn::DistributedAttention attention_;
};

// diffusers FluxTransformerBlock (double stream).
class FluxTransformerBlock : public nn::Module {
 public:
  FluxTransformerBlock(const FluxArchConfig& config, const BuildOptions& options);
  struct Output {
    Tensor context;
    Tensor x;
  };
  Output forward(const Tensor& x, const Tensor& context, const Tensor& temb, const JointRotary& rope,
                 int64_t image_tokens) const;

 private:
  nn::AdaLayerNormZero* norm1_;
  nn::AdaLayerNormZero* norm1_context_;
  FluxAttention* attn_;
  nn::LayerNorm* norm2_;
  nn::FeedForward* ff_;
  nn::LayerNorm* norm2_context_;
  nn::FeedForward* ff_context_;
};

// diffusers FluxSingleTransformerBlock. The reference joins the streams, runs the block and
// splits them again every block; the joined sequence is kept across blocks here instead
// (the same numbers) and traced as the reference's (text, image) pair. Fused projections:
// to_qkv_mlp = q|k|v|proj_mlp in one GEMM (Black Forest Labs' linear1).
class FluxSingleTransformerBlock : public nn::Module {
 public:
  FluxSingleTransformerBlock(const FluxArchConfig& config, const BuildOptions& options);
  // joined [B, L + N_local, D], text rows first.
  Tensor forward(const Tensor& joined, int64_t text_tokens, const Tensor& temb, const JointRotary& rope,
                 int64_t image_tokens) const;

 private:
  nn::AdaLayerNormZeroSingle* norm_;
  nn::ReplicatedLinear* to_qkv_mlp_ = nullptr;
  nn::ReplicatedLinear* proj_mlp_ = nullptr;
  nn::ActivationModule* act_mlp_;
  nn::ReplicatedLinear* proj_out_;
  FluxAttention* attn_;
};

class FluxTransformer2DModel : public DiTModel {
 public:
  FluxTransformer2DModel(FluxArchConfig config, const BuildOptions& options);
  const DiTArchConfig& arch_config() const override { return config_; }
  const ParamNameMapping& param_names_mapping() const override { return mapping_; }
  ModelIO io() const override;
  // Packed latents of a (height / 2) x (width / 2) grid of 2 x 2 patches, as FluxPipeline
  // packs them; an image model: shape.frames must be 1.
  TensorMap example_inputs(const ExampleShape& shape, uint64_t seed) const override;
  // The 8-bit self-attention under precision fp8 (its forward measured against bf16: bench/RESULTS.md).
  bool allows_quantized_attention() const override { return true; }

 protected:
  TensorMap run(const TensorMap& inputs, const ArgMap& args) override;

 private:
  FluxArchConfig config_;
  ParamNameMapping mapping_;
  const nn::SequenceParallel& parallel_;
  FluxPosEmbed* pos_embed_;
  nn::CombinedTimestepTextProjEmbeddings* time_text_embed_;
  nn::ReplicatedLinear* context_embedder_;
  nn::ReplicatedLinear* x_embedder_;
  nn::ModuleList* transformer_blocks_;
  nn::ModuleList* single_transformer_blocks_;
  nn::AdaLayerNormContinuous* norm_out_;
  nn::ReplicatedLinear* proj_out_;
};

// Black Forest Labs' single-file names (flux1-dev.safetensors) onto the diffusers ones:
// fused img_attn.qkv / txt_attn.qkv and single_blocks.N.linear1 (q|k|v|mlp_in) split,
// final_layer.adaLN_modulation.1's (shift, scale) rows reordered to (scale, shift).
// fused: onto the fused projections instead (those three taken whole, and diffusers'
// to_q/k/v, add_q/k/v_proj and the single blocks' to_q/k/v + proj_mlp merged into them).
ParamNameMapping original_layout_mapping(const FluxArchConfig& config, bool fused = false);

// Registers this family's class names with the model registry (models/builtin.cc).
void register_models();

}  // namespace fastdit::flux
