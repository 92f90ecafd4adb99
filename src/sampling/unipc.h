// diffusers UniPCMultistepScheduler in flow-prediction mode (use_flow_sigmas,
// prediction_type flow_prediction, predict_x0): the UniP predictor and UniC corrector of
// order solver_order with the B(h) variant bh1 or bh2, lower_order_final, disable_corrector
// and final_sigmas_type. Wan's default sampler.
#pragma once

#include <set>

#include "sampling/scheduler.h"

namespace fastdit::sampling {

class UniPCFlowScheduler : public Scheduler {
 public:
  // Reads the config's keys (the caller finishes the reader); `shift` replaces flow_shift.
  UniPCFlowScheduler(ConfigReader& config, std::optional<double> shift);
  const char* class_name() const override { return "UniPCMultistepScheduler"; }
  void set_timesteps(int64_t steps, std::optional<double> mu = std::nullopt) override;
  // Returns float32 (the sample's own dtype in the reference).
  Tensor step(const Tensor& model_output, const Tensor& sample) override;

 private:
  // The coefficients one UniP or UniC update shares, from the sigmas of this step (t), the
  // previous one (s0) and the earlier ones of the history (D1 ratios rk).
  struct Update {
    float alpha_t = 0, sigma_ratio = 0, h_phi_1 = 0, b_h = 0;
    std::vector<float> rks;   // one per history term, then 1
    std::vector<float> b;     // right-hand side of the order conditions
    std::vector<Tensor> d1s;  // (m_k − m0) / r_k per history term
  };
  // sigma_t / sigma_s0 are indices into sigmas_; history k uses sigmas_[s0 − k].
  Update update(int64_t t, int64_t s0, int64_t order) const;
  // UniP: the sample of the next step from this one and the history.
  Tensor predict(const Tensor& sample, int64_t order) const;
  // UniC: refines the sample the last prediction made (from last_sample), using this
  // step's data prediction this_x0; order is the one the last prediction used.
  Tensor correct(const Tensor& this_x0, const Tensor& last_sample, int64_t order) const;

  int64_t solver_order_ = 2;
  bool bh2_ = true;
  bool lower_order_final_ = true;
  bool final_sigma_zero_ = true;
  std::set<int64_t> disable_corrector_;

  // Multistep state: the last solver_order data predictions, newest last.
  std::vector<Tensor> x0_history_;
  Tensor last_sample_;
  int64_t lower_order_nums_ = 0;
  int64_t this_order_ = 0;
};

}  // namespace fastdit::sampling
