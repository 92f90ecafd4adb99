// Schedulers against the official diffusers ones: every case in tests/fixtures/schedulers
// (made by tools/reference/make_scheduler_cases.py) gives the same timestep and sigma tables
// bit for bit, and the same step outputs to float32 rounding over the whole chain.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "loader/safetensors.h"
#include "sampling/flux_pipeline.h"
#include "sampling/scheduler.h"
#include "support/test_support.h"

namespace fastdit::sampling {
namespace {

namespace fs = std::filesystem;

fs::path fixtures() { return testing::source_path("tests/fixtures/schedulers"); }

// Listed, not discovered: test discovery runs the binary outside the source tree.
const std::vector<std::string> kCases = {"euler_dynamic_linear_terminal_8",
                                         "euler_dynamic_mu0.9_28",
                                         "euler_shift1_1",
                                         "euler_shift3_50",
                                         "euler_shift5_4",
                                         "unipc_bh1_sigma_min_shift5_6",
                                         "unipc_dynamic_mu1.2_12",
                                         "unipc_no_lower_order_final_corrector_off_7",
                                         "unipc_order3_shift8_10",
                                         "unipc_shift12_40",
                                         "unipc_shift3_1",
                                         "unipc_shift5_4",
                                         "unipc_wan_shift3_50"};

struct SchedulerCase {
  std::unique_ptr<Scheduler> scheduler;
  SafetensorsFile steps;
  int64_t num_steps = 0;
  std::optional<double> mu;
};

SchedulerCase open_case(const std::string& name) {
  SchedulerCase c{load_scheduler(fixtures() / name / "scheduler_config.json"),
                  SafetensorsFile::open(fixtures() / name / "steps.safetensors"), 0, std::nullopt};
  c.num_steps = std::stoll(c.steps.metadata().at("num_inference_steps"));
  const std::string mu = c.steps.metadata().at("mu");
  if (!mu.empty()) c.mu = std::stod(mu);
  return c;
}

class SchedulerParity : public ::testing::TestWithParam<std::string> {};

TEST_P(SchedulerParity, TablesAreBitExact) {
  SchedulerCase c = open_case(GetParam());
  c.scheduler->set_timesteps(c.num_steps, c.mu);
  const auto timesteps = c.steps.tensor("timesteps").to_float_vector();
  const auto sigmas = c.steps.tensor("sigmas").to_float_vector();
  ASSERT_EQ(c.scheduler->timesteps().size(), timesteps.size());
  ASSERT_EQ(c.scheduler->sigmas().size(), sigmas.size());
  for (size_t i = 0; i < timesteps.size(); ++i)
    EXPECT_EQ(c.scheduler->timesteps()[i], timesteps[i]) << "timestep " << i;
  for (size_t i = 0; i < sigmas.size(); ++i) EXPECT_EQ(c.scheduler->sigmas()[i], sigmas[i]) << "sigma " << i;
}

TEST_P(SchedulerParity, StepsMatchOverTheWholeChain) {
  SchedulerCase c = open_case(GetParam());
  c.scheduler->set_timesteps(c.num_steps, c.mu);
  Tensor sample = c.steps.tensor("sample");
  for (int64_t i = 0; i < c.num_steps; ++i) {
    const std::string n = std::to_string(i);
    sample = c.scheduler->step(c.steps.tensor("model_output." + n), sample);
    const Tensor reference = c.steps.tensor("prev_sample." + n);
    EXPECT_EQ(sample.dtype(), DType::Float32);
    ASSERT_EQ(sample.shape(), reference.shape());
    EXPECT_LE(testing::rel_l2(sample, reference), 1e-6) << "step " << i;
    EXPECT_LE(testing::max_abs_diff(sample, reference), 1e-5) << "step " << i;
  }
  EXPECT_EQ(c.scheduler->step_index(), c.num_steps);
}

// GoogleTest names allow letters, digits and underscores only.
std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SchedulerParity, ::testing::ValuesIn(kCases), test_name);

TEST(Schedulers, EveryFixtureIsListedAndBothClassesAreCovered) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(fixtures()))
    if (entry.is_directory()) found.push_back(entry.path().filename().string());
  std::sort(found.begin(), found.end());
  EXPECT_EQ(found, kCases);
  int unipc = 0, euler = 0, dynamic = 0;
  for (const auto& name : kCases) {
    SchedulerCase c = open_case(name);
    (std::string(c.scheduler->class_name()) == "UniPCMultistepScheduler" ? unipc : euler) += 1;
    dynamic += c.scheduler->dynamic_shifting();
  }
  EXPECT_GE(unipc, 5);
  EXPECT_GE(euler, 4);
  EXPECT_GE(dynamic, 2);
}

TEST(Schedulers, ShiftOverrideGivesTheReferenceTableOfThatShift) {
  // Wan's default config with flow_shift replaced by 12 is the A14B case's config.
  auto scheduler = make_scheduler(default_scheduler_config("UniPCMultistepScheduler"), "default", 12.0);
  scheduler->set_timesteps(40);
  SchedulerCase c = open_case("unipc_shift12_40");
  EXPECT_EQ(scheduler->timesteps(), std::vector<float>(c.steps.tensor("timesteps").to_float_vector()));
  EXPECT_EQ(scheduler->sigmas(), c.steps.tensor("sigmas").to_float_vector());
}

TEST(Schedulers, DefaultConfigsBuild) {
  for (const char* name : {"UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"}) {
    auto scheduler = make_scheduler(default_scheduler_config(name), "default");
    EXPECT_STREQ(scheduler->class_name(), name);
    scheduler->set_timesteps(3);
    EXPECT_EQ(scheduler->num_steps(), 3);
    EXPECT_EQ(scheduler->sigmas().back(), 0.0f);
  }
}

nlohmann::json with(nlohmann::json config, const std::string& key, nlohmann::json value) {
  config[key] = std::move(value);
  return config;
}

void expect_config_error(nlohmann::json config, const std::string& needle) {
  try {
    make_scheduler(config, "cfg.json");
    ADD_FAILURE() << "no error for " << config.dump();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
  }
}

TEST(Schedulers, UnsupportedSettingsNameTheKey) {
  nlohmann::json unipc = default_scheduler_config("UniPCMultistepScheduler");
  expect_config_error({{"_class_name", "DDIMScheduler"}}, "DDIMScheduler");
  expect_config_error(with(unipc, "use_karras_sigmas", true), "use_karras_sigmas");
  expect_config_error(with(unipc, "prediction_type", "epsilon"), "prediction_type");
  expect_config_error(with(unipc, "use_flow_sigmas", false), "use_flow_sigmas");
  expect_config_error(with(unipc, "solver_typo", "bh2"), "solver_typo");
  expect_config_error(with(unipc, "flow_shift", "three"), "flow_shift");
  nlohmann::json euler = default_scheduler_config("FlowMatchEulerDiscreteScheduler");
  expect_config_error(with(euler, "stochastic_sampling", true), "stochastic_sampling");
  expect_config_error(with(euler, "time_shift_type", "cubic"), "time_shift_type");
}

TEST(Schedulers, MisuseIsAnError) {
  auto scheduler = make_scheduler(default_scheduler_config("FlowMatchEulerDiscreteScheduler"), "default");
  const Tensor x = testing::random_tensor({1, 2, 3}, 1);
  EXPECT_THROW(scheduler->step(x, x), Error);  // before set_timesteps
  EXPECT_THROW(scheduler->set_timesteps(0), Error);
  scheduler->set_timesteps(1);
  scheduler->step(x, x);
  EXPECT_THROW(scheduler->step(x, x), Error);  // past the last step
  nlohmann::json dynamic = default_scheduler_config("FlowMatchEulerDiscreteScheduler");
  dynamic["use_dynamic_shifting"] = true;
  EXPECT_THROW(make_scheduler(dynamic, "dynamic")->set_timesteps(4), Error);  // no mu
}

TEST(Schedulers, LinspaceIsNumpys) {
  EXPECT_EQ(linspace(2.0, 5.0, 1), std::vector<double>{2.0});
  const auto v = linspace(1.0, 0.001, 51);
  EXPECT_EQ(v.front(), 1.0);
  EXPECT_EQ(v.back(), 0.001);
  EXPECT_EQ(v[7], 7.0 * ((0.001 - 1.0) / 50.0) + 1.0);
}

// FluxPipeline at 1024 x 1024 (4,096 image tokens), 28 steps on FLUX.1-dev's scheduler:
// mu = calculate_shift = max_shift, and the custom sigmas linspace(1, 1/28, 28) shifted in
// float32 as numpy shifts an np.float32 array (values from numpy 1.24, float32 x 1000).
TEST(Schedulers, FluxDevCustomSigmasAreNumpysFloat32) {
  auto scheduler = make_scheduler(flux_scheduler_config(true), "FLUX.1-dev");
  const double mu = calculate_shift(4096, scheduler->shift_anchors());
  EXPECT_NEAR(mu, 1.15, 1e-12);
  EXPECT_DOUBLE_EQ(calculate_shift(24, scheduler->shift_anchors()), 0.4607291666666667);
  scheduler->set_sigmas(flux_sigmas(28), mu);
  const std::vector<float> expected = {
      1000.0f,       988.4086303710938f, 976.2224731445312f, 963.3944091796875f, 949.87255859375f,
      935.5989379882812f, 920.5089721679688f, 904.53076171875f,   887.5834350585938f, 869.575927734375f,
      850.4057006835938f, 829.9564208984375f, 808.0955200195312f, 784.671630859375f,  759.5109252929688f,
      732.412841796875f,  703.1447143554688f, 671.434814453125f,  636.9644775390625f, 599.356689453125f,
      558.162841796875f,  512.8441162109375f, 462.7484130859375f, 407.07843017578125f, 344.84893798828125f,
      274.8279724121094f, 195.45458984375f,   104.72090148925781f};
  EXPECT_EQ(scheduler->timesteps(), expected);
  EXPECT_EQ(scheduler->sigmas().back(), 0.0f);
  // FLUX.1-schnell: static shift 1 leaves the sigmas as given; mu is ignored.
  auto schnell = make_scheduler(flux_scheduler_config(false), "FLUX.1-schnell");
  schnell->set_sigmas(flux_sigmas(4), 0.5);
  EXPECT_EQ(schnell->timesteps(), (std::vector<float>{1000.0f, 750.0f, 500.0f, 250.0f}));
  // UniPC takes no custom sigmas.
  EXPECT_THROW(make_scheduler(default_scheduler_config("UniPCMultistepScheduler"), "unipc")->set_sigmas({1.0}), Error);
}

}  // namespace
}  // namespace fastdit::sampling
