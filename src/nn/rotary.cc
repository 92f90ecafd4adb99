#include "nn/rotary.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace fastdit::nn {

namespace {
// One axis's cos/sin of every distinct position it takes, [positions, d/2] row-major:
// freq_j = theta^(-2j/d), angle = pos·freq_j, in the precision the reference computes them.
struct AxisAngles {
  int64_t half = 0;
  std::vector<float> cos, sin;
};

AxisAngles axis_angles(int64_t dim, std::span<const double> positions, double theta, AnglePrecision precision) {
  AxisAngles a;
  a.half = dim / 2;
  a.cos.resize(positions.size() * static_cast<size_t>(a.half));
  a.sin.resize(a.cos.size());
  for (int64_t j = 0; j < a.half; ++j) {
    for (size_t p = 0; p < positions.size(); ++p) {
      float c, s;
      if (precision == AnglePrecision::Float32) {
        const float freq =
            1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * j) / static_cast<float>(dim));
        const float angle = static_cast<float>(positions[p]) * freq;
        c = std::cos(angle), s = std::sin(angle);
      } else {
        const double freq = 1.0 / std::pow(theta, static_cast<double>(2 * j) / static_cast<double>(dim));
        const double angle = positions[p] * freq;
        c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
      }
      a.cos[p * a.half + j] = c;
      a.sin[p * a.half + j] = s;
    }
  }
  return a;
}

int64_t checked_width(std::span<const int64_t> axis_dims) {
  int64_t width = 0;
  for (int64_t d : axis_dims) {
    FASTDIT_CHECK(d % 2 == 0 && d >= 0, "rotary table: axis width ", d, " must be even");
    width += d;
  }
  return width;
}

// Every token's row is a gather of its axes' rows (row_of(token, axis) indexes that axis's
// AxisAngles): the transcendental work is per distinct axis position, not per token.
template <typename RowOf>
RotaryTable assemble(std::span<const int64_t> axis_dims, const std::vector<AxisAngles>& axes, int64_t tokens,
                     ops::RopeStyle style, const RowOf& row_of) {
  const int64_t width = checked_width(axis_dims);
  RotaryTable table{Tensor::empty({tokens, width}, DType::Float32),
                    Tensor::empty({tokens, width}, DType::Float32), {}, {}};
  float* cos_out = table.cos.data<float>();
  float* sin_out = table.sin.data<float>();
#pragma omp parallel for if (tokens > 4096)
  for (int64_t token = 0; token < tokens; ++token) {
    int64_t column = 0;
    for (size_t a = 0; a < axes.size(); ++a) {
      const int64_t half = axes[a].half, row = row_of(token, a);
      const float* c = axes[a].cos.data() + row * half;
      const float* s = axes[a].sin.data() + row * half;
      for (int64_t j = 0; j < half; ++j) {
        const int64_t first = style == ops::RopeStyle::Interleaved ? column + 2 * j : column + j;
        const int64_t second = style == ops::RopeStyle::Interleaved ? first + 1 : first + half;
        cos_out[token * width + first] = cos_out[token * width + second] = c[j];
        sin_out[token * width + first] = sin_out[token * width + second] = s[j];
      }
      column += axis_dims[a];
    }
  }
  return table;
}
}  // namespace

RotaryTable rotary_grid_table(std::span<const int64_t> axis_dims, std::span<const int64_t> grid,
                              double theta, ops::RopeStyle style, AnglePrecision precision) {
  FASTDIT_CHECK(axis_dims.size() == grid.size(), "rotary table: ", axis_dims.size(),
                " axis widths for a grid of rank ", grid.size());
  checked_width(axis_dims);
  std::vector<AxisAngles> axes;
  for (size_t a = 0; a < grid.size(); ++a) {
    std::vector<double> positions(static_cast<size_t>(grid[a]));
    for (int64_t p = 0; p < grid[a]; ++p) positions[p] = static_cast<double>(p);
    axes.push_back(axis_angles(axis_dims[a], positions, theta, precision));
  }
  return assemble(axis_dims, axes, shape_numel(grid), style, [&](int64_t token, size_t axis) {
    int64_t rest = token;  // last axis fastest
    for (size_t a = grid.size() - 1; a > axis; --a) rest /= grid[a];
    return rest % grid[axis];
  });
}

RotaryTable rotary_position_table(std::span<const int64_t> axis_dims, const Tensor& positions, double theta,
                                  ops::RopeStyle style) {
  FASTDIT_CHECK(positions.dim() == 2 && positions.size(1) == static_cast<int64_t>(axis_dims.size()),
                "rotary table: positions must be [tokens, ", axis_dims.size(), "] (one column per axis), got ",
                positions.str());
  checked_width(axis_dims);
  // float32 first, as the reference's ids.float(); the angles are float64 from there on.
  const Tensor pos = ops::cast(positions.to(Device::cpu()), DType::Float32).contiguous();
  const float* p = pos.data<float>();
  const int64_t tokens = pos.size(0), n_axes = pos.size(1);
  std::vector<AxisAngles> axes;
  std::vector<std::vector<float>> distinct(static_cast<size_t>(n_axes));
  for (int64_t a = 0; a < n_axes; ++a) {
    auto& values = distinct[a];
    for (int64_t t = 0; t < tokens; ++t) {
      FASTDIT_CHECK(std::isfinite(p[t * n_axes + a]), "rotary table: position [", t, ", ", a, "] is ",
                    p[t * n_axes + a], ", not a finite number");
      values.push_back(p[t * n_axes + a]);
    }
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    const std::vector<double> wide(values.begin(), values.end());
    axes.push_back(axis_angles(axis_dims[a], wide, theta, AnglePrecision::Float64));
  }
  return assemble(axis_dims, axes, tokens, style, [&](int64_t token, size_t axis) {
    const auto& values = distinct[axis];
    return static_cast<int64_t>(std::lower_bound(values.begin(), values.end(), p[token * n_axes + axis]) -
                                values.begin());
  });
}

namespace {
// torch.linspace(0, 1, steps): the first half counts up from 0, the second down from 1.
template <typename T>
std::vector<T> unit_linspace(int64_t steps) {
  std::vector<T> out(static_cast<size_t>(steps));
  if (steps == 1) out[0] = T(0);
  if (steps <= 1) return out;
  const T step = (T(1) - T(0)) / static_cast<T>(steps - 1);
  const int64_t half = steps / 2;
  for (int64_t i = 0; i < steps; ++i)
    out[i] = i < half ? T(0) + step * static_cast<T>(i) : T(1) - step * static_cast<T>(steps - i - 1);
  return out;
}

std::vector<float> coordinate_frequencies(int64_t count, double theta, AnglePrecision precision) {
  std::vector<float> freqs(static_cast<size_t>(count));
  if (precision == AnglePrecision::Float64) {
    const std::vector<double> exponent = unit_linspace<double>(count);
    for (int64_t k = 0; k < count; ++k) freqs[k] = static_cast<float>(std::pow(theta, exponent[k]) * M_PI / 2.0);
  } else {
    const std::vector<float> exponent = unit_linspace<float>(count);
    for (int64_t k = 0; k < count; ++k)
      freqs[k] = std::pow(static_cast<float>(theta), exponent[k]) * static_cast<float>(M_PI) / 2.0f;
  }
  return freqs;
}
}  // namespace

RotaryTable rotary_coordinate_table(const Tensor& coords, std::span<const float> max_pos, int64_t dim,
                                    int64_t heads, double theta, ops::RopeStyle style, AnglePrecision precision) {
  FASTDIT_CHECK(coords.dim() == 3 && coords.size(1) == static_cast<int64_t>(max_pos.size()) && coords.size(1) > 0,
                "rotary table: coordinates must be [B, ", max_pos.size(), ", N] (one row per axis), got ",
                coords.str());
  const int64_t batch = coords.size(0), axes = coords.size(1), tokens = coords.size(2);
  FASTDIT_CHECK(heads > 0 && dim % (2 * heads) == 0 && dim >= 2 * axes, "rotary table: dim ", dim,
                " must split into ", heads, " heads of an even width and hold at least one frequency per axis");
  const int64_t per_axis = dim / (2 * axes), half = dim / 2, pad = half - per_axis * axes;
  const std::vector<float> freqs = coordinate_frequencies(per_axis, theta, precision);
  const Tensor c = ops::cast(coords.to(Device::cpu()), DType::Float32).contiguous();
  const float* p = c.data<float>();
  const int64_t head_width = dim / heads, r = half / heads;
  RotaryTable table{Tensor::empty({batch, tokens, heads, head_width}, DType::Float32),
                    Tensor::empty({batch, tokens, heads, head_width}, DType::Float32), {}, {}};
  float* cos_out = table.cos.data<float>();
  float* sin_out = table.sin.data<float>();
  std::vector<float> angle_cos(static_cast<size_t>(half)), angle_sin(static_cast<size_t>(half));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t n = 0; n < tokens; ++n) {
      for (int64_t j = 0; j < pad; ++j) angle_cos[j] = 1.0f, angle_sin[j] = 0.0f;
      for (int64_t k = 0; k < per_axis; ++k) {
        for (int64_t a = 0; a < axes; ++a) {
          const float position = p[(b * axes + a) * tokens + n];
          FASTDIT_CHECK(std::isfinite(position), "rotary table: coordinate [", b, ", ", a, ", ", n, "] is ",
                        position, ", not a finite number");
          const float grid = position / max_pos[a];
          const float angle = (grid * 2.0f - 1.0f) * freqs[k];
          angle_cos[pad + k * axes + a] = std::cos(angle);
          angle_sin[pad + k * axes + a] = std::sin(angle);
        }
      }
      float* cos_row = cos_out + (b * tokens + n) * dim;
      float* sin_row = sin_out + (b * tokens + n) * dim;
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t i = 0; i < r; ++i) {
          const int64_t angle = h * r + i;  // the flat angle this head's i-th pair takes
          if (style == ops::RopeStyle::Interleaved) {
            const int64_t at = h * head_width + 2 * i;
            cos_row[at] = cos_row[at + 1] = angle_cos[angle];
            sin_row[at] = sin_row[at + 1] = angle_sin[angle];
          } else {
            const int64_t at = h * head_width + i;
            cos_row[at] = cos_row[at + r] = angle_cos[angle];
            sin_row[at] = sin_row[at + r] = angle_sin[angle];
          }
        }
      }
    }
  }
  return table;
}

const RotaryTable& RotaryTableCache::get(std::span<const int64_t> grid, Device device,
                                         const SequenceParallel& parallel) const {
  const Key key{Shape(grid.begin(), grid.end()), device.type, device.index};
  auto found = cached_.find(key);
  if (found == cached_.end()) {
    RotaryTable table = rotary_grid_table(axis_dims_, grid, theta_, style_, precision_);
    table.cos = table.cos.to(device);
    table.sin = table.sin.to(device);
    if (parallel.world_size() > 1) {
      table.shard_cos = parallel.shard_sequence(table.cos, 0);
      table.shard_sin = parallel.shard_sequence(table.sin, 0);
    }
    found = cached_.emplace(key, std::move(table)).first;
  }
  return found->second;
}

}  // namespace fastdit::nn
