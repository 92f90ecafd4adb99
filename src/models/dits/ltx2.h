// LTX-2 audio-video DiT (diffusers LTX2VideoTransformer3DModel): a video token stream and an
// audio token stream of different widths that exchange information in every block. A block
// runs six attentions: video and audio self-attention (RoPE from fractional coordinates:
// frames / fps with the causal offset and pixel strides for video, seconds for audio), video
// and audio cross-attention to their own text, and the two cross-modal attentions A2V (video
// queries, audio keys) and V2A (audio queries, video keys) whose q and k are rotated by
// different tables; then a GELU-tanh feed-forward per stream. AdaLN-single embedders give
// the per-block modulation (shift-first for self-attention and FFN, scale-first for A2V/V2A);
// two output heads, `sample` (video) and `audio_sample`. 2.3's switches (per-head gates,
// prompt modulation, cross timesteps) and STG / isolate_modalities follow the reference.
//
// Sequence parallelism: the video stream (the long one: 6,144 tokens at 121 frames of
// 512x768, against 121 audio tokens) is sharded over the ranks after proj_in, its
// self-attention takes part in the exchange, and its per-token modulation is sharded with it.
// The audio stream is replicated: every rank computes all of it, in the same order, so the
// ranks agree bit for bit without communication. A2V needs nothing (local video queries,
// all audio keys); V2A needs all video keys, so its modulated key/value input is gathered.
// Splitting the short audio stream would cost one all-to-all per audio attention for a
// sliver of the work.
#pragma once

#include <map>
#include <tuple>

#include "configs/ltx2_config.h"
#include "models/dit.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/rotary.h"

namespace fastdit::ltx2 {

// diffusers PixArtAlphaCombinedTimestepSizeEmbeddings without additional conditions:
// sinusoids (256, [cos | sin]) cast to the hidden dtype, through timestep_embedder.
class CombinedTimestepEmbedding : public nn::Module {
 public:
  explicit CombinedTimestepEmbedding(int64_t dim);
  // t [N] (any numeric dtype) -> [N, dim] in dtype.
  Tensor forward(const Tensor& t, DType dtype) const;

 private:
  nn::Timesteps* time_proj_;
  nn::TimestepEmbedding* timestep_embedder_;
};

// LTX2AdaLayerNormSingle: embedded = emb(t); returns (linear(silu(embedded)) with
// count·dim features, embedded), traced as the reference's tuple.
class AdaLayerNormSingle : public nn::Module {
 public:
  AdaLayerNormSingle(int64_t dim, int64_t count);
  struct Output {
    Tensor modulation;  // [N, count·dim]
    Tensor embedded;    // [N, dim]
  };
  Output forward(const Tensor& t, DType dtype) const;

 private:
  CombinedTimestepEmbedding* emb_;
  nn::ActivationModule* silu_;
  nn::ReplicatedLinear* linear_;
};

// The rotary table a query or key of one attention is rotated by: cos/sin [B or 1, S, H_rope,
// width / H_rope] (nn::rotary_coordinate_table), applied to the flat projection viewed as
// H_rope heads — which may differ from the attention's own head count (A2V's video queries
// use the video head count over the audio width).
struct Rope {
  const nn::RotaryTable* table = nullptr;
  ops::RopeStyle style = ops::RopeStyle::Interleaved;
};

// STG's perturbation of one self-attention: where mask is 0 the output is the value
// projection, where 1 the attention (torch.lerp(value, attention, mask)).
struct Perturbation {
  bool active = false;       // this block is an STG block and the model is perturbed_attn
  bool all_perturbed = false;
  Tensor mask;  // [B, 1, 1] float32, or undefined (with all_perturbed)
};

// LTX2Attention (LTX2AudioVideoAttnProcessor / LTX2PerturbedAttnProcessor): to_q / to_k /
// to_v, RMS norms across all heads (weight, eps 1e-6), RoPE on the flat projections, SDPA
// with an additive mask, optional per-head gates 2·sigmoid(to_gate_logits(x)), to_out.
// options.fuse_projections: one GEMM for q|k|v (to_qkv, rows q, k, v) in a self-attention,
// for k|v (to_kv) in a cross-attention (text and A2V / V2A: k and v read the same context);
// a self-attention then goes from the one output to normalised, rotated q, k and v heads in
// one pass (ops::qkv_norm_rope), a cross-attention's norm reads k as a column range of its
// output in place. The gate stays its own GEMM (it stays out of FP8, the projections may not).
class Ltx2Attention : public nn::Module {
 public:
  Ltx2Attention(int64_t query_dim, int64_t kv_dim, int64_t heads, int64_t head_dim, bool bias, bool out_bias,
                bool gated, bool self_attention, const BuildOptions& options);
  // x [B, Sq, query_dim]; context [B, Sk, kv_dim] (undefined: self-attention on x);
  // mask: additive, broadcasting to [B, H, Sq, Sk], or undefined. distributed: x is this
  // rank's shard of full_length tokens of a self-attention that takes part in the
  // exchange (no mask then).
  Tensor forward(const Tensor& x, const Tensor& context, const Tensor& mask, const Rope& q_rope,
                 const Rope& k_rope, const Perturbation& perturbation = {}, bool distributed = false,
                 int64_t full_length = 0) const;

 private:
  // The flat projections [B, S, inner] (column views of the fused GEMM's output when fused);
  // q and k undefined when values_only.
  struct Projections {
    Tensor q, k, v;
  };
  Projections project(const Tensor& x, const Tensor& context, bool values_only) const;
  bool one_pass_norm_rope(bool values_only, const Rope& rope) const;
  Tensor rotate(const Tensor& t, const Rope& rope) const;
  int64_t heads_, head_dim_;
  nn::RMSNorm *norm_q_, *norm_k_;
  nn::ReplicatedLinear *to_q_ = nullptr, *to_k_ = nullptr, *to_v_ = nullptr, *to_out_;
  nn::ReplicatedLinear *to_qkv_ = nullptr, *to_kv_ = nullptr;  // fused
  nn::ActivationModule* out_dropout_;
  nn::ReplicatedLinear* to_gate_logits_ = nullptr;
  nn::DistributedAttention distributed_;
};

// Everything a block reads besides the two streams, made once per forward.
struct BlockContext {
  Tensor text, audio_text;              // [B, S, D] / [B, S_a, Da], in the model dtype
  Tensor text_mask, audio_text_mask;    // additive [B, 1, 1, S] or undefined
  Tensor video_self_mask;               // additive [B, 1, N_v, N_v] or undefined
  Tensor temb, temb_audio;              // [B, T, k·D]
  Tensor temb_ca_scale_shift, temb_ca_audio_scale_shift, temb_ca_gate, temb_ca_audio_gate;
  Tensor temb_prompt, temb_prompt_audio;  // [B, 1, 2·D] or undefined
  Rope video_rope, audio_rope;          // self-attention (video: this rank's rows)
  Rope ca_video_rope, ca_video_rope_full, ca_audio_rope;  // cross-modal
  bool cross_modal = true;              // !isolate_modalities
  int64_t video_tokens = 0;             // the full video sequence
};

// LTX2VideoTransformerBlock. Returns (video, audio), traced as out[0], out[1].
class Ltx2Block : public nn::Module {
 public:
  Ltx2Block(const Ltx2ArchConfig& config, const BuildOptions& options);
  std::pair<Tensor, Tensor> forward(const Tensor& video, const Tensor& audio, const BlockContext& ctx,
                                    const Perturbation& perturbation) const;

 private:
  const Ltx2ArchConfig& config_;
  const nn::SequenceParallel& parallel_;
  nn::Parameter *scale_shift_table_, *audio_scale_shift_table_;
  nn::Parameter *prompt_scale_shift_table_ = nullptr, *audio_prompt_scale_shift_table_ = nullptr;
  nn::Parameter *video_a2v_table_, *audio_a2v_table_;
  nn::RMSNorm *norm1_, *audio_norm1_, *norm2_, *audio_norm2_, *audio_to_video_norm_, *video_to_audio_norm_,
      *norm3_, *audio_norm3_;
  Ltx2Attention *attn1_, *audio_attn1_, *attn2_, *audio_attn2_, *audio_to_video_attn_, *video_to_audio_attn_;
  nn::FeedForward *ff_, *audio_ff_;
};

class LTX2VideoTransformer3DModel : public DiTModel {
 public:
  LTX2VideoTransformer3DModel(Ltx2ArchConfig config, const BuildOptions& options);
  const DiTArchConfig& arch_config() const override { return config_; }
  const ParamNameMapping& param_names_mapping() const override { return mapping_; }
  // Tensors named as the reference forward's keyword arguments; num_frames / height / width
  // / fps / audio_num_frames build the RoPE coordinates when video_coords / audio_coords are
  // not given (as the reference does); both heads returned.
  ModelIO io() const override;
  // shape.frames x height x width latent video tokens, the matching audio latent frames
  // (frames of 8 at fps 24, 25 audio latents a second), shape.text_len text tokens per stream.
  TensorMap example_inputs(const ExampleShape& shape, uint64_t seed) const override;
  // The 8-bit self-attention under precision fp8 (its forward measured against bf16: bench/RESULTS.md).
  bool allows_quantized_attention() const override { return true; }
  ArgMap example_args(const ExampleShape& shape) const override;

 protected:
  TensorMap run(const TensorMap& inputs, const ArgMap& args) override;

 private:
  struct Tables {
    nn::RotaryTable video, audio, ca_video, ca_audio;
  };
  Tables build_tables(const Tensor& video_coords, const Tensor& audio_coords, Device device) const;
  const Tables& computed_tables(int64_t frames, int64_t height, int64_t width, double fps, int64_t audio_frames,
                                Device device) const;
  Tensor video_coordinates(int64_t frames, int64_t height, int64_t width, double fps) const;
  Tensor audio_coordinates(int64_t frames) const;
  // A 1 in dtype on device, made once (an eager forward runs before any CUDA graph capture,
  // which may not upload).
  const Tensor& one(DType dtype, Device device) const;

  Ltx2ArchConfig config_;
  ParamNameMapping mapping_;
  const nn::SequenceParallel& parallel_;
  ops::RopeStyle rope_style_;
  using TableKey = std::tuple<int64_t, int64_t, int64_t, double, int64_t, DeviceType, int>;
  mutable std::map<TableKey, Tables> cached_tables_;
  mutable std::map<std::tuple<DType, DeviceType, int>, Tensor> ones_;
  nn::Parameter *scale_shift_table_, *audio_scale_shift_table_;
  nn::Parameter* keyframes_abs_pos_embedding_ = nullptr;
  nn::ReplicatedLinear *proj_in_, *audio_proj_in_;
  nn::PixArtAlphaTextProjection *caption_projection_ = nullptr, *audio_caption_projection_ = nullptr;
  AdaLayerNormSingle *time_embed_, *audio_time_embed_;
  AdaLayerNormSingle *av_cross_attn_video_scale_shift_, *av_cross_attn_audio_scale_shift_;
  AdaLayerNormSingle *av_cross_attn_video_a2v_gate_, *av_cross_attn_audio_v2a_gate_;
  AdaLayerNormSingle *prompt_adaln_ = nullptr, *audio_prompt_adaln_ = nullptr;
  nn::ModuleList* transformer_blocks_;
  nn::LayerNorm *norm_out_, *audio_norm_out_;
  nn::ReplicatedLinear *proj_out_, *audio_proj_out_;
};

// The original Lightricks single-file names (`model.diffusion_model.` prefix, patchify_proj,
// adaln_single, av_ca_*_adaln_single, scale_shift_table_a2v_ca_*, q_norm / k_norm,
// prompt_adaln_single) onto the diffusers ones; the diffusers names map to themselves.
ParamNameMapping ltx2_mapping();

// The diffusers names onto the fused projections (BuildOptions::fuse_projections), applied
// after ltx2_mapping: the self-attentions' (attn1, audio_attn1) to_q, to_k, to_v into
// to_qkv, the cross-attentions' (attn2, audio_attn2, audio_to_video_attn,
// video_to_audio_attn) to_k, to_v into to_kv; weights and biases alike.
ParamNameMapping fused_projection_mapping();

// Registers LTX2VideoTransformer3DModel (called by the registry's built-in list).
void register_models();

}  // namespace fastdit::ltx2
