// diffusers FlowMatchEulerDiscreteScheduler: x_{i+1} = x_i + (σ_{i+1} − σ_i)·v, with static
// or dynamic (resolution-dependent) shifting and an optional terminal stretch.
#pragma once

#include "sampling/scheduler.h"

namespace fastdit::sampling {

class FlowMatchEulerScheduler : public Scheduler {
 public:
  // Reads the config's keys (the caller finishes the reader); `shift` replaces "shift".
  FlowMatchEulerScheduler(ConfigReader& config, std::optional<double> shift);
  const char* class_name() const override { return "FlowMatchEulerDiscreteScheduler"; }
  void set_timesteps(int64_t steps, std::optional<double> mu = std::nullopt) override;
  // As the reference takes custom sigmas: cast to float32 and shifted in float32.
  void set_sigmas(const std::vector<double>& sigmas, std::optional<double> mu = std::nullopt) override;
  // Upcasts the sample to float32, as the reference does, and returns the next sample in
  // the model output's dtype (the reference casts it back).
  Tensor step(const Tensor& model_output, const Tensor& sample) override;

 private:
  // Timesteps σ·N and the sigma table with its terminal 0, from the shifted sigmas.
  void set_table(const std::vector<float>& sigmas);
  // The training schedule's first and last sigma (float32 values): set_timesteps spaces
  // its timesteps between them, before shifting them again.
  double sigma_max_ = 1.0;
  double sigma_min_ = 0.0;
};

}  // namespace fastdit::sampling
