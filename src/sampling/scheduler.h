// Flow-matching schedulers with diffusers' numerics: FlowMatchEulerDiscreteScheduler and
// UniPCMultistepScheduler in flow-prediction mode (Wan's default). A scheduler owns the
// table of timesteps (what the model is fed) and sigmas (noise levels, one more than the
// steps, ending at the terminal sigma) and turns the model's flow prediction at step i into
// the sample of step i + 1.
//
// The tables are built as diffusers builds them (numpy float64, then float32), and each
// step repeats the reference's float32 operations in the reference's order, so outputs
// agree with diffusers to float32 rounding.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "configs/config_reader.h"
#include "core/tensor.h"

namespace fastdit::sampling {

// How set_timesteps bends a linear sigma ramp toward high noise: a static shift
// s·σ / (1 + (s − 1)·σ), or a resolution-dependent time shift with parameter mu, then an
// optional stretch so the ramp ends at `terminal`.
struct SigmaShift {
  double shift = 1.0;
  bool dynamic = false;
  bool linear_time_shift = false;  // time_shift_type "linear" (else "exponential")
  std::optional<double> terminal;  // shift_terminal

  // Reads use_dynamic_shifting, time_shift_type and shift_terminal; the static shift is
  // under `shift_key` (Euler: "shift", UniPC: "flow_shift").
  static SigmaShift from_config(ConfigReader& config, const std::string& shift_key);
  // The shifted sigmas (float64, as numpy computes them). mu is required when dynamic.
  std::vector<double> apply(std::vector<double> sigmas, std::optional<double> mu) const;
  // The same on float32 sigmas in float32 arithmetic, as numpy shifts a pipeline's custom
  // sigmas (an np.float32 array with Python scalars).
  std::vector<float> apply(std::vector<float> sigmas, std::optional<double> mu) const;
};

// The anchors of a pipeline's resolution-dependent mu, as a FlowMatchEulerDiscreteScheduler
// config carries them (FluxPipeline reads them with these defaults).
struct ShiftAnchors {
  int64_t base_image_seq_len = 256;
  int64_t max_image_seq_len = 4096;
  double base_shift = 0.5;
  double max_shift = 1.15;
};

// diffusers' calculate_shift (the Flux pipelines): mu linear in the image sequence length,
// base_shift at base_image_seq_len and max_shift at max_image_seq_len.
double calculate_shift(int64_t image_seq_len, const ShiftAnchors& anchors);

// numpy.linspace(start, stop, num) to the last bit: i·step + start, the last value exact.
std::vector<double> linspace(double start, double stop, int64_t num);

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual const char* class_name() const = 0;  // the diffusers class it reproduces

  // Builds the tables for `steps` denoising steps and resets the multistep state. mu is
  // the resolution-dependent shift, required exactly when dynamic_shifting().
  virtual void set_timesteps(int64_t steps, std::optional<double> mu = std::nullopt) = 0;
  // set_timesteps(sigmas=..., mu=...): the pipeline's own sigmas (one per step) instead of
  // the scheduler's spacing. Only schedulers that take them override this.
  virtual void set_sigmas(const std::vector<double>& sigmas, std::optional<double> mu = std::nullopt);
  // One denoising step at step_index(): model_output is the (guided) flow prediction for
  // `sample`. Returns the next sample on the same device; the step index advances.
  virtual Tensor step(const Tensor& model_output, const Tensor& sample) = 0;

  bool dynamic_shifting() const { return shift_.dynamic; }
  const ShiftAnchors& shift_anchors() const { return anchors_; }
  int64_t num_train_timesteps() const { return num_train_timesteps_; }
  const std::vector<float>& timesteps() const { return timesteps_; }
  const std::vector<float>& sigmas() const { return sigmas_; }
  int64_t step_index() const { return step_index_; }
  int64_t num_steps() const { return static_cast<int64_t>(timesteps_.size()); }

 protected:
  // Checks that set_timesteps ran and steps remain; returns the index of this step.
  int64_t begin_step() const;

  int64_t num_train_timesteps_ = 1000;
  SigmaShift shift_;
  ShiftAnchors anchors_;
  std::vector<float> timesteps_;
  std::vector<float> sigmas_;
  int64_t step_index_ = 0;
};

// Builds the scheduler a diffusers scheduler_config.json describes (its `_class_name`
// picks the class). Every key is read or deliberately ignored; a setting this engine does
// not reproduce (Karras sigmas, thresholding, epsilon prediction, ...) is an error naming
// the key. `shift` replaces the config's static shift (flow_shift / shift).
std::unique_ptr<Scheduler> make_scheduler(const nlohmann::json& config, const std::string& source,
                                          std::optional<double> shift = std::nullopt);
std::unique_ptr<Scheduler> load_scheduler(const std::filesystem::path& config_json,
                                          std::optional<double> shift = std::nullopt);
// The scheduler_config.json the diffusers Wan pipelines ship for `class_name`
// (UniPCMultistepScheduler in flow-prediction mode, or FlowMatchEulerDiscreteScheduler),
// for models that come without one.
nlohmann::json default_scheduler_config(const std::string& class_name);

}  // namespace fastdit::sampling
