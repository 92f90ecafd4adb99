#include "sampling/unipc.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/ops.h"

namespace fastdit::sampling {

namespace {

// Solves a·x = b for a small dense system by Gaussian elimination with partial pivoting in
// float32 (the reference calls torch.linalg.solve on float32 tensors).
std::vector<float> solve(std::vector<std::vector<float>> a, std::vector<float> b) {
  const size_t n = b.size();
  for (size_t col = 0; col < n; ++col) {
    size_t pivot = col;
    for (size_t row = col + 1; row < n; ++row)
      if (std::fabs(a[row][col]) > std::fabs(a[pivot][col])) pivot = row;
    std::swap(a[col], a[pivot]);
    std::swap(b[col], b[pivot]);
    for (size_t row = col + 1; row < n; ++row) {
      const float factor = a[row][col] / a[col][col];
      for (size_t k = col; k < n; ++k) a[row][k] -= factor * a[col][k];
      b[row] -= factor * b[col];
    }
  }
  std::vector<float> x(n);
  for (size_t row = n; row-- > 0;) {
    float sum = b[row];
    for (size_t k = row + 1; k < n; ++k) sum -= a[row][k] * x[k];
    x[row] = sum / a[row][row];
  }
  return x;
}

// The order conditions' matrix R[j][k] = rk^j (j < rows, k < columns).
std::vector<std::vector<float>> powers(const std::vector<float>& rks, size_t rows, size_t columns) {
  std::vector<std::vector<float>> r(rows, std::vector<float>(columns, 1.0f));
  for (size_t j = 1; j < rows; ++j)
    for (size_t k = 0; k < columns; ++k) r[j][k] = r[j - 1][k] * rks[k];
  return r;
}

// Σ_k rhos[k] · terms[k] over the first `count` terms.
Tensor weighted_sum(const std::vector<float>& rhos, const std::vector<Tensor>& terms, size_t count) {
  Tensor sum = ops::scale(terms[0], rhos[0]);
  for (size_t k = 1; k < count; ++k) sum = ops::add(sum, ops::scale(terms[k], rhos[k]));
  return sum;
}

}  // namespace

UniPCFlowScheduler::UniPCFlowScheduler(ConfigReader& config, std::optional<double> shift) {
  const std::string& src = config.source();
  num_train_timesteps_ = config.get_int("num_train_timesteps", 1000);
  FASTDIT_CHECK(num_train_timesteps_ >= 2, src, ": num_train_timesteps must be at least 2");
  solver_order_ = config.get_int("solver_order", 2);
  FASTDIT_CHECK(solver_order_ >= 1 && solver_order_ <= 8, src, ": solver_order ", solver_order_, " out of [1, 8]");
  const std::string prediction = config.get_string("prediction_type", "epsilon");
  FASTDIT_CHECK(prediction == "flow_prediction", src, ": prediction_type '", prediction,
                "' is not supported (flow-matching DiTs use flow_prediction)");
  FASTDIT_CHECK(config.get_bool("use_flow_sigmas", false), src,
                ": use_flow_sigmas must be true for flow_prediction");
  FASTDIT_CHECK(config.get_bool("predict_x0", true), src,
                ": predict_x0 false is not supported with flow_prediction");
  FASTDIT_CHECK(!config.get_bool("thresholding", false), src, ": thresholding is not supported");
  FASTDIT_CHECK(!config.has("solver_p"), src, ": solver_p is not supported");
  config.ignore("solver_p", "must be null (checked above)");
  for (const char* key : {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"})
    FASTDIT_CHECK(!config.get_bool(key, false), src, ": ", key, " is not supported");
  const std::string solver = config.get_string("solver_type", "bh2");
  // diffusers maps the DPM-Solver names onto bh2 the same way.
  FASTDIT_CHECK(
      solver == "bh1" || solver == "bh2" || solver == "midpoint" || solver == "heun" || solver == "logrho", src,
      ": solver_type '", solver, "' must be bh1 or bh2");
  bh2_ = solver != "bh1";
  lower_order_final_ = config.get_bool("lower_order_final", true);
  const auto disabled = config.get_int_list("disable_corrector", std::vector<int64_t>{});
  disable_corrector_ = {disabled.begin(), disabled.end()};
  const std::string final_sigma = config.get_string("final_sigmas_type", "zero");
  FASTDIT_CHECK(final_sigma == "zero" || final_sigma == "sigma_min", src, ": final_sigmas_type '", final_sigma,
                "' must be zero or sigma_min");
  final_sigma_zero_ = final_sigma == "zero";
  shift_ = SigmaShift::from_config(config, "flow_shift");
  if (shift) shift_.shift = *shift;
  for (const char* key : {"beta_start", "beta_end", "beta_schedule", "trained_betas", "rescale_betas_zero_snr"})
    config.ignore(key, "the VP beta schedule; flow sigmas replace it");
  for (const char* key : {"timestep_spacing", "steps_offset"})
    config.ignore(key, "integer spacing of the VP schedule; flow sigmas replace it");
  for (const char* key : {"sigma_min", "sigma_max"})
    config.ignore(key, "used by Karras/exponential/beta sigmas only");
  for (const char* key : {"dynamic_thresholding_ratio", "sample_max_value"})
    config.ignore(key, "thresholding is off");
}

void UniPCFlowScheduler::set_timesteps(int64_t steps, std::optional<double> mu) {
  FASTDIT_CHECK(steps >= 1, class_name(), ": need at least one step, got ", steps);
  const auto n = static_cast<double>(num_train_timesteps_);
  std::vector<double> sigmas = linspace(1.0, 1.0 / n, steps + 1);
  sigmas.pop_back();
  sigmas = shift_.apply(std::move(sigmas), mu);
  // The reference nudges a first sigma of 1 so that log(alpha) stays finite.
  constexpr double kEps = 1e-6;
  if (std::fabs(sigmas.front() - 1.0) < kEps) sigmas.front() -= kEps;
  timesteps_.clear();
  for (double sigma : sigmas) timesteps_.push_back(static_cast<float>(static_cast<int64_t>(sigma * n)));
  sigmas.push_back(final_sigma_zero_ ? 0.0 : sigmas.back());
  sigmas_.assign(sigmas.begin(), sigmas.end());
  x0_history_.assign(static_cast<size_t>(solver_order_), Tensor{});
  last_sample_ = Tensor{};
  lower_order_nums_ = 0;
  this_order_ = 0;
  step_index_ = 0;
}

UniPCFlowScheduler::Update UniPCFlowScheduler::update(int64_t t, int64_t s0, int64_t order) const {
  // Scalars in float32, operation by operation, as the reference computes them on 0-d tensors.
  const auto lambda = [&](int64_t i) {
    const float sigma = sigmas_[static_cast<size_t>(i)];
    return std::log(1.0f - sigma) - std::log(sigma);
  };
  Update u;
  const float sigma_t = sigmas_[static_cast<size_t>(t)];
  u.alpha_t = 1.0f - sigma_t;
  u.sigma_ratio = sigma_t / sigmas_[static_cast<size_t>(s0)];
  const float lambda_s0 = lambda(s0);
  const float h = lambda(t) - lambda_s0;
  const Tensor& m0 = x0_history_.back();
  for (int64_t k = 1; k < order; ++k) {
    const float rk = (lambda(s0 - k) - lambda_s0) / h;
    u.rks.push_back(rk);
    const Tensor& mk = x0_history_[x0_history_.size() - 1 - static_cast<size_t>(k)];
    // The reference divides by rk; multiplying by its reciprocal differs by at most an ulp.
    u.d1s.push_back(ops::scale(ops::sub(mk, m0), 1.0f / rk));
  }
  u.rks.push_back(1.0f);
  const float hh = -h;  // predict_x0
  u.h_phi_1 = std::expm1(hh);
  u.b_h = bh2_ ? std::expm1(hh) : hh;
  float h_phi_k = u.h_phi_1 / hh - 1.0f;
  int64_t factorial = 1;
  for (int64_t j = 1; j <= order; ++j) {
    u.b.push_back(h_phi_k * static_cast<float>(factorial) / u.b_h);
    factorial *= j + 1;
    h_phi_k = h_phi_k / hh - static_cast<float>(1.0 / static_cast<double>(factorial));
  }
  return u;
}

Tensor UniPCFlowScheduler::predict(const Tensor& sample, int64_t order) const {
  const int64_t i = step_index_;
  const Update u = update(i + 1, i, order);
  const Tensor& m0 = x0_history_.back();
  const Tensor base = ops::sub(ops::scale(sample, u.sigma_ratio), ops::scale(m0, u.alpha_t * u.h_phi_1));
  if (u.d1s.empty()) return base;
  const size_t terms = u.d1s.size();
  // Order 2 uses the fixed weight 1/2; higher orders solve the conditions without the last.
  const std::vector<float> rhos =
      order == 2 ? std::vector<float>{0.5f}
                 : solve(powers(u.rks, terms, terms), std::vector<float>(u.b.begin(), u.b.begin() + terms));
  return ops::sub(base, ops::scale(weighted_sum(rhos, u.d1s, terms), u.alpha_t * u.b_h));
}

Tensor UniPCFlowScheduler::correct(const Tensor& this_x0, const Tensor& last_sample, int64_t order) const {
  const int64_t i = step_index_;
  const Update u = update(i, i - 1, order);
  const Tensor& m0 = x0_history_.back();
  const Tensor base = ops::sub(ops::scale(last_sample, u.sigma_ratio), ops::scale(m0, u.alpha_t * u.h_phi_1));
  const std::vector<float> rhos =
      order == 1 ? std::vector<float>{0.5f} : solve(powers(u.rks, u.rks.size(), u.rks.size()), u.b);
  Tensor correction = ops::scale(ops::sub(this_x0, m0), rhos.back());
  if (!u.d1s.empty()) correction = ops::add(weighted_sum(rhos, u.d1s, u.d1s.size()), correction);
  return ops::cast(ops::sub(base, ops::scale(correction, u.alpha_t * u.b_h)), last_sample.dtype());
}

Tensor UniPCFlowScheduler::step(const Tensor& model_output, const Tensor& sample_in) {
  const int64_t i = begin_step();
  Tensor sample = sample_in;
  const bool use_corrector = i > 0 && !disable_corrector_.contains(i - 1) && last_sample_.defined();
  const Tensor x0 = ops::sub(sample, ops::scale(model_output, sigmas_[static_cast<size_t>(i)]));
  if (use_corrector) sample = correct(x0, last_sample_, this_order_);
  std::rotate(x0_history_.begin(), x0_history_.begin() + 1, x0_history_.end());
  x0_history_.back() = x0;
  const int64_t order = lower_order_final_ ? std::min(solver_order_, num_steps() - i) : solver_order_;
  this_order_ = std::min(order, lower_order_nums_ + 1);  // warm-up: no more history than steps taken
  last_sample_ = sample;
  const Tensor next = ops::cast(predict(sample, this_order_), sample.dtype());
  lower_order_nums_ = std::min(lower_order_nums_ + 1, solver_order_);
  ++step_index_;
  return next;
}

}  // namespace fastdit::sampling
