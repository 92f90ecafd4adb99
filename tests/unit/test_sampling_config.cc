// Sampling settings, presets, pipeline folders and the seeded noise generator.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "sampling/noise.h"
#include "sampling/pipeline_folder.h"
#include "sampling/sampling_config.h"
#include "support/test_support.h"

namespace fastdit::sampling {
namespace {

namespace fs = std::filesystem;

fs::path write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
  return path;
}

TEST(Presets, EveryShippedPresetReadsAndIsComplete) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator(testing::source_path("presets"))) {
    const SamplingConfig p = read_sampling_preset(entry.path());
    EXPECT_TRUE(p.scheduler && p.steps && p.guidance_scale && p.height && p.width && p.seed) << entry.path();
    EXPECT_TRUE(p.frames && p.vae_stride) << entry.path();
    if (p.frames && p.vae_stride) EXPECT_EQ((*p.frames - 1) % (*p.vae_stride)[0], 0) << entry.path();
    // A video pipeline's preset (more than one frame) also fixes its shift and frame rate; an
    // image pipeline's (Flux: one frame) shifts dynamically with the image size.
    if (p.frames && *p.frames > 1) EXPECT_TRUE(p.flow_shift && p.fps) << entry.path();
    ++count;
  }
  EXPECT_GE(count, 5);
}

TEST(Presets, Wan22A14BSwitchesExpertsWithTheirOwnGuidance) {
  const SamplingConfig p = read_sampling_preset(testing::source_path("presets/wan2.2-t2v-a14b.json"));
  EXPECT_EQ(p.boundary_ratio, 0.875);
  EXPECT_EQ(p.guidance_scale, 4.0);
  EXPECT_EQ(p.guidance_scale_2, 3.0);
  EXPECT_EQ(p.flow_shift, 12.0);
  EXPECT_EQ(p.steps, 40);
}

TEST(Presets, BadPresetsNameTheFileAndKey) {
  const fs::path dir = testing::temp_dir("presets");
  const auto expect_error = [&](const std::string& text, const std::string& needle) {
    const fs::path path = write_file(dir / "p.json", text);
    try {
      read_sampling_preset(path);
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"stepz": 4})", "stepz");
  expect_error(R"({"steps": "four"})", "steps");
  expect_error(R"({"steps": 0})", "steps must be positive");
  expect_error(R"({"boundary_ratio": 1.5})", "boundary_ratio");
  expect_error(R"({"vae_stride": [4, 8]})", "vae_stride");
  expect_error(R"({"seed": -1})", "seed");
  expect_error("[1, 2]", "JSON object");
  expect_error("{", "not valid JSON");
}

TEST(SamplingConfig, LaterSettingsWinFieldByField) {
  SamplingConfig base;
  base.steps = 50;
  base.guidance_scale = 5.0;
  SamplingConfig over;
  over.steps = 4;
  over.seed = 9;
  base.override_with(over);
  EXPECT_EQ(base.steps, 4);
  EXPECT_EQ(base.guidance_scale, 5.0);
  EXPECT_EQ(base.seed, 9u);
}

TEST(PipelineFolder, ReadsTheA14BFolder) {
  const fs::path dir = testing::source_path("tests/fixtures/pipeline/wan22_a14b_tiny");
  const PipelineFolder folder = read_pipeline_folder(dir);
  EXPECT_EQ(folder.pipeline_class, "WanPipeline");
  EXPECT_EQ(folder.transformer, dir / "transformer");
  EXPECT_EQ(folder.transformer_2, dir / "transformer_2");
  EXPECT_EQ(folder.scheduler_config, dir / "scheduler" / "scheduler_config.json");
  EXPECT_EQ(folder.settings.boundary_ratio, 0.875);
  EXPECT_FALSE(folder.settings.vae_stride.has_value());  // no VAE in the folder
}

TEST(PipelineFolder, TransformerFoldersAndTheirParents) {
  const fs::path t2v = testing::source_path("tests/fixtures/wan/t2v");
  EXPECT_EQ(read_pipeline_folder(t2v).transformer, t2v / "transformer");
  EXPECT_EQ(read_pipeline_folder(t2v / "transformer").transformer, t2v / "transformer");
  EXPECT_FALSE(read_pipeline_folder(t2v).transformer_2.has_value());
}

TEST(PipelineFolder, ReadsTheVaeStrideAndRejectsWhatItCannotRun) {
  const fs::path dir = testing::temp_dir("pipeline_folder");
  fs::copy(testing::source_path("tests/fixtures/pipeline/wan_t2v_tiny/transformer"), dir / "transformer");
  const std::string index = R"({"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"],
      "vae": ["diffusers", "AutoencoderKLWan"], "text_encoder": [null, null], "expand_timesteps": true)";
  write_file(dir / "model_index.json", index + "}");
  write_file(dir / "vae" / "config.json", R"({"scale_factor_temporal": 4, "scale_factor_spatial": 16})");
  EXPECT_EQ(read_pipeline_folder(dir).settings.vae_stride, (std::array<int64_t, 3>{4, 16, 16}));
  EXPECT_FALSE(read_pipeline_folder(dir).scheduler_config.has_value());

  write_file(dir / "model_index.json", index + R"(, "transformer_3": ["diffusers", "X"]})");
  EXPECT_THROW(read_pipeline_folder(dir), Error);  // unknown key
  write_file(dir / "model_index.json", R"({"_class_name": "WanImageToVideoPipeline"})");
  EXPECT_THROW(read_pipeline_folder(dir), Error);
  write_file(dir / "model_index.json", index + R"(, "scheduler": ["diffusers", "UniPCMultistepScheduler"]})");
  EXPECT_THROW(read_pipeline_folder(dir), Error);  // names a scheduler folder that is not there
  EXPECT_THROW(read_pipeline_folder(dir / "missing"), Error);
}

TEST(Noise, SeededStandardNormal) {
  const Tensor a = gaussian_noise({3, 7, 1001}, 42);  // odd count: the last pair is half used
  EXPECT_EQ(a.shape(), (Shape{3, 7, 1001}));
  EXPECT_EQ(testing::max_abs_diff(a, gaussian_noise({3, 7, 1001}, 42)), 0.0);
  EXPECT_GT(testing::max_abs_diff(a, gaussian_noise({3, 7, 1001}, 43)), 0.5);
  double sum = 0, squares = 0;
  const auto values = a.to_float_vector();
  for (float v : values) {
    ASSERT_TRUE(std::isfinite(v));
    sum += v;
    squares += double(v) * v;
  }
  const double n = static_cast<double>(values.size()), mean = sum / n;
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(squares / n - mean * mean), 1.0, 0.02);
}

}  // namespace
}  // namespace fastdit::sampling
