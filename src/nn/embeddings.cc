#include "nn/embeddings.h"

namespace fastdit::nn {

CroppedPatchEmbed::CroppedPatchEmbed(int64_t in_channels, int64_t dim, int64_t patch, int64_t pos_embed_max_size)
    : Module("PatchEmbed"), patch_(patch), max_size_(pos_embed_max_size) {
  pos_embed = add_parameter("pos_embed", {1, pos_embed_max_size * pos_embed_max_size, dim});
  proj_ = add_module<PatchEmbed2d>("proj", in_channels, dim, std::array<int64_t, 2>{patch, patch});
}

Tensor CroppedPatchEmbed::forward(const Tensor& latent) const {
  FASTDIT_CHECK(latent.dim() == 4 && latent.size(2) % patch_ == 0 && latent.size(3) % patch_ == 0,
                "PatchEmbed: latent must be [B, C, H, W] with H and W multiples of the patch size ",
                patch_, ", got ", latent.str());
  const int64_t h = latent.size(2) / patch_, w = latent.size(3) / patch_;
  FASTDIT_CHECK(h <= max_size_ && w <= max_size_, "PatchEmbed: a ", h, " x ", w,
                " token grid does not fit the ", max_size_, " x ", max_size_, " position table (latent ",
                latent.str(), ")");
  FASTDIT_CHECK(pos_embed->value.defined(), "parameter used before it was loaded");
  const Tensor patches = proj_->forward(latent);  // [B, D, h, w]
  const int64_t batch = patches.size(0), dim = patches.size(1);
  const Tensor crop = pos_embed->value.reshape({1, max_size_, max_size_, dim})
                          .narrow(1, (max_size_ - h) / 2, h)
                          .narrow(2, (max_size_ - w) / 2, w);
  // The channels-last view of the patches plus the crop is the token layout already.
  const Tensor tokens = ops::add(patches.permute({0, 2, 3, 1}), crop);
  return emit(ops::cast(tokens, patches.dtype()).reshape({batch, h * w, dim}));
}

CombinedTimestepTextProjEmbeddings::CombinedTimestepTextProjEmbeddings(int64_t dim, int64_t pooled_projection_dim,
                                                                       bool guidance)
    : Module(guidance ? "CombinedTimestepGuidanceTextProjEmbeddings" : "CombinedTimestepTextProjEmbeddings") {
  constexpr int64_t kFrequencies = 256;
  time_proj_ = add_module<Timesteps>("time_proj", kFrequencies, true, 0.0f);
  timestep_embedder_ = add_module<TimestepEmbedding>("timestep_embedder", kFrequencies, dim);
  if (guidance) guidance_embedder_ = add_module<TimestepEmbedding>("guidance_embedder", kFrequencies, dim);
  text_embedder_ = add_module<PixArtAlphaTextProjection>("text_embedder", pooled_projection_dim, dim, Activation::SiLU);
}

Tensor CombinedTimestepTextProjEmbeddings::forward(const Tensor& timestep, const Tensor& pooled,
                                                   const Tensor& guidance) const {
  FASTDIT_CHECK(guidance.defined() == (guidance_embedder_ != nullptr), type_name(), ": guidance ",
                guidance_embedder_ ? "is required" : "is not taken (the model has no guidance embedding)");
  const auto embed = [&](const TimestepEmbedding* embedder, const Tensor& t) {
    return embedder->forward(ops::cast(time_proj_->forward(t), pooled.dtype()));
  };
  Tensor time = embed(timestep_embedder_, timestep);
  if (guidance_embedder_) time = ops::add(time, embed(guidance_embedder_, guidance));
  return emit(ops::add(time, text_embedder_->forward(pooled)));
}

GaussianFourierProjection::GaussianFourierProjection(std::string type_name, int64_t frequencies)
    : Module(std::move(type_name)) {
  weight = add_parameter("weight", {frequencies});
}

Tensor GaussianFourierProjection::forward(const Tensor& t) const {
  FASTDIT_CHECK(t.dim() == 1, name(), ": timestep must be [N], got ", t.str());
  const Tensor& w = **weight;
  FASTDIT_CHECK(w.defined(), name(), ".weight used before it was loaded");
  constexpr float kTwoPi = 6.283185307179586f;
  const Tensor angle = ops::mul(ops::scale(ops::cast(t, w.dtype()), kTwoPi).unsqueeze(1), w.unsqueeze(0));
  const Tensor parts[] = {ops::cos(angle), ops::sin(angle)};
  return emit(ops::concat(parts, 1));
}

}  // namespace fastdit::nn
