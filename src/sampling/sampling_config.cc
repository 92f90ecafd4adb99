#include "sampling/sampling_config.h"

#include <cmath>

#include "configs/config_reader.h"
#include "core/error.h"

namespace fastdit::sampling {

namespace {

template <class T>
void take(std::optional<T>& field, const std::optional<T>& over) {
  if (over) field = over;
}

std::optional<double> optional_float(ConfigReader& reader, const std::string& key) {
  if (reader.has(key)) return reader.get_float(key);
  reader.ignore(key, "null or absent");
  return std::nullopt;
}

}  // namespace

void SamplingConfig::override_with(const SamplingConfig& over) {
  take(scheduler, over.scheduler);
  take(steps, over.steps);
  take(guidance_scale, over.guidance_scale);
  take(guidance_scale_2, over.guidance_scale_2);
  take(flow_shift, over.flow_shift);
  take(boundary_ratio, over.boundary_ratio);
  take(height, over.height);
  take(width, over.width);
  take(frames, over.frames);
  take(fps, over.fps);
  take(seed, over.seed);
  take(vae_stride, over.vae_stride);
}

void SamplingConfig::validate(const std::string& source) const {
  const auto positive = [&](const std::optional<int64_t>& v, const char* name) {
    FASTDIT_CHECK(!v || *v > 0, source, ": ", name, " must be positive, got ", *v);
  };
  positive(steps, "steps");
  positive(height, "height");
  positive(width, "width");
  positive(frames, "frames");
  positive(fps, "fps");
  FASTDIT_CHECK(!steps || *steps <= kMaxSteps, source, ": steps ", *steps, " is more than ", kMaxSteps);
  const auto finite = [&](const std::optional<double>& v, const char* name, bool positive) {
    FASTDIT_CHECK(!v || (std::isfinite(*v) && (positive ? *v > 0 : *v >= 0)), source, ": ", name, " must be a finite number ",
                  positive ? "> 0" : ">= 0", ", got ", v.value_or(0));
  };
  finite(guidance_scale, "guidance_scale", false);
  finite(guidance_scale_2, "guidance_scale_2", false);
  finite(flow_shift, "flow_shift", true);
  FASTDIT_CHECK(!boundary_ratio || (*boundary_ratio > 0 && *boundary_ratio < 1), source,
                ": boundary_ratio must lie in (0, 1)");
  if (vae_stride)
    for (int64_t s : *vae_stride) FASTDIT_CHECK(s > 0, source, ": vae_stride entries must be positive");
}

SamplingConfig read_sampling_preset(const std::filesystem::path& path) {
  ConfigReader reader = ConfigReader::from_file(path.string());
  reader.ignore("description", "free text");
  reader.ignore("source", "free text: where the values come from");
  SamplingConfig c;
  c.scheduler = reader.get_optional_string("scheduler");
  c.steps = reader.get_optional_int("steps");
  c.guidance_scale = optional_float(reader, "guidance_scale");
  c.guidance_scale_2 = optional_float(reader, "guidance_scale_2");
  c.flow_shift = optional_float(reader, "flow_shift");
  c.boundary_ratio = optional_float(reader, "boundary_ratio");
  c.height = reader.get_optional_int("height");
  c.width = reader.get_optional_int("width");
  c.frames = reader.get_optional_int("frames");
  c.fps = reader.get_optional_int("fps");
  if (const auto seed = reader.get_optional_int64("seed")) {
    FASTDIT_CHECK(*seed >= 0, path.string(), ": seed must be >= 0");
    c.seed = static_cast<uint64_t>(*seed);
  }
  if (reader.has("vae_stride")) {
    const auto stride = reader.get_int_list("vae_stride");
    FASTDIT_CHECK(stride.size() == 3, path.string(), ": vae_stride needs 3 entries (frames, height, width)");
    c.vae_stride = std::array<int64_t, 3>{stride[0], stride[1], stride[2]};
  }
  reader.ignore("vae_stride", "read above when set");
  reader.finish();
  c.validate(path.string());
  return c;
}

}  // namespace fastdit::sampling
