#include "sampling/scheduler.h"

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "core/files.h"
#include "sampling/flow_match_euler.h"
#include "sampling/unipc.h"

namespace fastdit::sampling {

double calculate_shift(int64_t image_seq_len, const ShiftAnchors& a) {
  const double m = (a.max_shift - a.base_shift) / static_cast<double>(a.max_image_seq_len - a.base_image_seq_len);
  const double b = a.base_shift - m * static_cast<double>(a.base_image_seq_len);
  return static_cast<double>(image_seq_len) * m + b;
}

std::vector<double> linspace(double start, double stop, int64_t num) {
  FASTDIT_CHECK(num >= 1, "linspace: need at least one value, got ", num);
  std::vector<double> values(static_cast<size_t>(num), start);
  if (num == 1) return values;
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int64_t i = 0; i < num; ++i) values[static_cast<size_t>(i)] = static_cast<double>(i) * step + start;
  values.back() = stop;
  return values;
}

SigmaShift SigmaShift::from_config(ConfigReader& config, const std::string& shift_key) {
  SigmaShift s;
  s.shift = config.get_float(shift_key, 1.0);
  s.dynamic = config.get_bool("use_dynamic_shifting", false);
  const std::string type = config.get_string("time_shift_type", "exponential");
  FASTDIT_CHECK(type == "exponential" || type == "linear", config.source(), ": time_shift_type '", type,
                "' must be exponential or linear");
  s.linear_time_shift = type == "linear";
  const double terminal = config.get_float("shift_terminal", 0.0);
  if (terminal != 0.0) s.terminal = terminal;  // diffusers tests it for truth: 0 means off
  return s;
}

std::vector<double> SigmaShift::apply(std::vector<double> sigmas, std::optional<double> mu) const {
  FASTDIT_CHECK(!dynamic || mu.has_value(),
                "use_dynamic_shifting needs a resolution-dependent mu and none "
                "was given (the Wan pipelines never shift dynamically)");
  for (double& sigma : sigmas) {
    if (dynamic) {
      const double stretch = 1.0 / sigma - 1.0;
      const double e = linear_time_shift ? *mu : std::exp(*mu);
      sigma = e / (e + stretch);
    } else {
      sigma = shift * sigma / (1.0 + (shift - 1.0) * sigma);
    }
  }
  if (terminal) {
    const double scale = (1.0 - sigmas.back()) / (1.0 - *terminal);
    for (double& sigma : sigmas) sigma = 1.0 - (1.0 - sigma) / scale;
  }
  return sigmas;
}

std::vector<float> SigmaShift::apply(std::vector<float> sigmas, std::optional<double> mu) const {
  FASTDIT_CHECK(!dynamic || mu.has_value(), "use_dynamic_shifting needs a resolution-dependent mu and none was given");
  // Python floats meet the float32 array as float32 scalars: each is rounded first.
  const auto s = static_cast<float>(shift), s_minus_1 = static_cast<float>(shift - 1.0);
  const float e = dynamic ? static_cast<float>(linear_time_shift ? *mu : std::exp(*mu)) : 0.0f;
  for (float& sigma : sigmas) {
    if (dynamic) {
      sigma = e / (e + (1.0f / sigma - 1.0f));  // exp(mu) / (exp(mu) + (1 / t - 1) ** 1.0)
    } else {
      sigma = s * sigma / (1.0f + s_minus_1 * sigma);
    }
  }
  if (terminal) {
    const float scale = (1.0f - sigmas.back()) / static_cast<float>(1.0 - *terminal);
    for (float& sigma : sigmas) sigma = 1.0f - (1.0f - sigma) / scale;
  }
  return sigmas;
}

void Scheduler::set_sigmas(const std::vector<double>&, std::optional<double>) {
  FASTDIT_FAIL(class_name(), " does not take a pipeline's custom sigmas (FlowMatchEulerDiscreteScheduler does)");
}

int64_t Scheduler::begin_step() const {
  FASTDIT_CHECK(!timesteps_.empty(), class_name(), ": step() before set_timesteps()");
  FASTDIT_CHECK(step_index_ < num_steps(), class_name(), ": all ", num_steps(), " steps are done");
  return step_index_;
}

std::unique_ptr<Scheduler> make_scheduler(const nlohmann::json& config, const std::string& source,
                                          std::optional<double> shift) {
  ConfigReader reader(config, source);
  const std::string name = reader.get_string("_class_name");
  reader.ignore("_diffusers_version", "bookkeeping");
  std::unique_ptr<Scheduler> scheduler;
  if (name == "UniPCMultistepScheduler") {
    scheduler = std::make_unique<UniPCFlowScheduler>(reader, shift);
  } else if (name == "FlowMatchEulerDiscreteScheduler") {
    scheduler = std::make_unique<FlowMatchEulerScheduler>(reader, shift);
  } else {
    FASTDIT_FAIL(source, ": scheduler '", name,
                 "' is not supported (known: UniPCMultistepScheduler, FlowMatchEulerDiscreteScheduler)");
  }
  reader.finish();
  return scheduler;
}

std::unique_ptr<Scheduler> load_scheduler(const std::filesystem::path& config_json, std::optional<double> shift) {
  nlohmann::json json = nlohmann::json::parse(read_regular_file(config_json), nullptr, /*allow_exceptions=*/false);
  FASTDIT_CHECK(!json.is_discarded(), config_json.string(), ": not valid JSON");
  return make_scheduler(json, config_json.string(), shift);
}

nlohmann::json default_scheduler_config(const std::string& class_name) {
  if (class_name == "UniPCMultistepScheduler")
    return {{"_class_name", class_name}, {"num_train_timesteps", 1000}, {"prediction_type", "flow_prediction"},
            {"use_flow_sigmas", true},   {"flow_shift", 3.0},           {"solver_order", 2},
            {"solver_type", "bh2"},      {"lower_order_final", true}};
  if (class_name == "FlowMatchEulerDiscreteScheduler")
    return {{"_class_name", class_name}, {"num_train_timesteps", 1000}, {"shift", 3.0}};
  FASTDIT_FAIL("scheduler '", class_name,
               "' is not supported (known: UniPCMultistepScheduler, FlowMatchEulerDiscreteScheduler)");
}

}  // namespace fastdit::sampling
