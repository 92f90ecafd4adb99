#include "sampling/flow_match_euler.h"

#include "core/error.h"
#include "ops/ops.h"

namespace fastdit::sampling {

FlowMatchEulerScheduler::FlowMatchEulerScheduler(ConfigReader& config, std::optional<double> shift) {
  num_train_timesteps_ = config.get_int("num_train_timesteps", 1000);
  FASTDIT_CHECK(num_train_timesteps_ >= 2, config.source(), ": num_train_timesteps must be at least 2");
  shift_ = SigmaShift::from_config(config, "shift");
  if (shift) shift_.shift = *shift;
  // The anchors of a pipeline's resolution-dependent mu (diffusers' calculate_shift lives in
  // the pipelines, which pass mu to set_timesteps).
  anchors_.base_image_seq_len = config.get_int("base_image_seq_len", anchors_.base_image_seq_len);
  anchors_.max_image_seq_len = config.get_int("max_image_seq_len", anchors_.max_image_seq_len);
  anchors_.base_shift = config.get_float("base_shift", anchors_.base_shift);
  anchors_.max_shift = config.get_float("max_shift", anchors_.max_shift);
  FASTDIT_CHECK(anchors_.max_image_seq_len != anchors_.base_image_seq_len, config.source(),
                ": max_image_seq_len must differ from base_image_seq_len");
  for (const char* key :
       {"invert_sigmas", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "stochastic_sampling"})
    FASTDIT_CHECK(!config.get_bool(key, false), config.source(), ": ", key, " is not supported");

  // The training table, in float32 as the reference builds it: σ = t / N for t = N … 1,
  // shifted statically unless the shift is dynamic.
  const auto n = static_cast<float>(num_train_timesteps_);
  const auto train_sigma = [&](float t) {
    const float sigma = t / n;
    if (shift_.dynamic) return sigma;
    return static_cast<float>(shift_.shift) * sigma / (1.0f + static_cast<float>(shift_.shift - 1.0) * sigma);
  };
  sigma_max_ = train_sigma(n);
  sigma_min_ = train_sigma(1.0f);
}

void FlowMatchEulerScheduler::set_timesteps(int64_t steps, std::optional<double> mu) {
  FASTDIT_CHECK(steps >= 1, class_name(), ": need at least one step, got ", steps);
  const auto n = static_cast<double>(num_train_timesteps_);
  std::vector<double> sigmas = linspace(sigma_max_ * n, sigma_min_ * n, steps);
  for (double& sigma : sigmas) sigma /= n;
  sigmas = shift_.apply(std::move(sigmas), mu);
  set_table(std::vector<float>(sigmas.begin(), sigmas.end()));
}

void FlowMatchEulerScheduler::set_sigmas(const std::vector<double>& sigmas, std::optional<double> mu) {
  FASTDIT_CHECK(!sigmas.empty(), class_name(), ": need at least one sigma");
  set_table(shift_.apply(std::vector<float>(sigmas.begin(), sigmas.end()), mu));
}

void FlowMatchEulerScheduler::set_table(const std::vector<float>& sigmas) {
  sigmas_ = sigmas;
  timesteps_.clear();
  for (float sigma : sigmas_) timesteps_.push_back(sigma * static_cast<float>(num_train_timesteps_));
  sigmas_.push_back(0.0f);
  step_index_ = 0;
}

Tensor FlowMatchEulerScheduler::step(const Tensor& model_output, const Tensor& sample) {
  const int64_t i = begin_step();
  const float dt = sigmas_[static_cast<size_t>(i) + 1] - sigmas_[static_cast<size_t>(i)];
  const Tensor next = ops::add(ops::cast(sample, DType::Float32), ops::scale(model_output, dt));
  ++step_index_;
  return ops::cast(next, model_output.dtype());
}

}  // namespace fastdit::sampling
