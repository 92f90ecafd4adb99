// Input embeddings shared by image DiTs, with diffusers' module names.
#pragma once

#include "nn/layers.h"

namespace fastdit::nn {

// diffusers PatchEmbed with pos_embed_max_size (SD3): Conv2d patches (proj), then the centre
// crop of a stored 2-D sin-cos table `pos_embed` [1, M², D] (M = pos_embed_max_size) is added:
// the table read as [M, M, D], rows from (M - h)/2, columns from (M - w)/2, for an h x w
// token grid. The table is a persistent buffer in the reference, so it is loaded from the
// checkpoint like a weight (and cast to the run dtype like one).
class CroppedPatchEmbed : public Module {
 public:
  CroppedPatchEmbed(int64_t in_channels, int64_t dim, int64_t patch, int64_t pos_embed_max_size);
  // latent [B, C, H, W] -> [B, (H/p)·(W/p), D], tokens row-major over the (h, w) grid,
  // in the dtype of the projection's output.
  Tensor forward(const Tensor& latent) const;
  Parameter* pos_embed;

 private:
  PatchEmbed2d* proj_;
  int64_t patch_, max_size_;
};

// diffusers CombinedTimestepTextProjEmbeddings (SD3, Flux-schnell): sinusoids of the
// timestep (256, [cos | sin]) through timestep_embedder, plus the pooled text vector
// through text_embedder (SiLU MLP). With guidance it is
// CombinedTimestepGuidanceTextProjEmbeddings (Flux-dev): the guidance scale's sinusoids
// (the same time_proj) through guidance_embedder are added too.
class CombinedTimestepTextProjEmbeddings : public Module {
 public:
  CombinedTimestepTextProjEmbeddings(int64_t dim, int64_t pooled_projection_dim, bool guidance = false);
  // timestep [B] and guidance [B] (any numeric dtype; guidance exactly when built with it),
  // pooled [B, P] -> [B, dim] in pooled's dtype (the float32 sinusoids are cast to it, as
  // the reference does).
  Tensor forward(const Tensor& timestep, const Tensor& pooled, const Tensor& guidance = {}) const;

 private:
  Timesteps* time_proj_;
  TimestepEmbedding* timestep_embedder_;
  TimestepEmbedding* guidance_embedder_ = nullptr;
  PixArtAlphaTextProjection* text_embedder_;
};

// diffusers GaussianFourierProjection as Stable Audio configures it (log=False,
// flip_sin_to_cos): [cos | sin] of 2π·t·W, W [F] a fixed random vector stored as `weight`.
// Computed in W's dtype, as the reference does after casting t to the model dtype: 2π·t
// and then ·W are each rounded to it, and so are cos and sin.
class GaussianFourierProjection : public Module {
 public:
  GaussianFourierProjection(std::string type_name, int64_t frequencies);
  // t [N] (any numeric dtype) -> [N, 2F] in W's dtype.
  Tensor forward(const Tensor& t) const;
  Parameter* weight;
};

}  // namespace fastdit::nn
