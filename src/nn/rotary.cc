#include "nn/rotary.h"

#include <cmath>
#include <utility>

namespace fastdit::nn {

namespace {
// cos and sin of position · freq_j with freq_j = theta^(-2j/d), in `precision`.
std::pair<float, float> rotary_angle(int64_t pos, int64_t j, int64_t d, double theta, AnglePrecision precision) {
  if (precision == AnglePrecision::Float32) {
    const float freq = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * j) / static_cast<float>(d));
    const float angle = static_cast<float>(pos) * freq;
    return {std::cos(angle), std::sin(angle)};
  }
  const double freq = 1.0 / std::pow(theta, static_cast<double>(2 * j) / static_cast<double>(d));
  const double angle = static_cast<double>(pos) * freq;
  return {static_cast<float>(std::cos(angle)), static_cast<float>(std::sin(angle))};
}
}  // namespace

RotaryTable rotary_grid_table(std::span<const int64_t> axis_dims, std::span<const int64_t> grid,
                              double theta, ops::RopeStyle style, AnglePrecision precision) {
  FASTDIT_CHECK(axis_dims.size() == grid.size(), "rotary table: ", axis_dims.size(),
                " axis widths for a grid of rank ", grid.size());
  int64_t width = 0;
  for (int64_t d : axis_dims) {
    FASTDIT_CHECK(d % 2 == 0 && d >= 0, "rotary table: axis width ", d, " must be even");
    width += d;
  }
  // Each axis's [positions, d_a/2] cos/sin once, then every token's row is a gather of its
  // coordinates' rows: the transcendental work is per axis position, not per token.
  std::vector<std::vector<float>> axis_cos(grid.size()), axis_sin(grid.size());
  for (size_t a = 0; a < grid.size(); ++a) {
    const int64_t half = axis_dims[a] / 2;
    axis_cos[a].resize(static_cast<size_t>(grid[a] * half));
    axis_sin[a].resize(axis_cos[a].size());
    for (int64_t j = 0; j < half; ++j) {
      for (int64_t pos = 0; pos < grid[a]; ++pos) {
        const auto [c, s] = rotary_angle(pos, j, axis_dims[a], theta, precision);
        axis_cos[a][pos * half + j] = c;
        axis_sin[a][pos * half + j] = s;
      }
    }
  }
  const int64_t tokens = shape_numel(grid);
  RotaryTable table{Tensor::empty({tokens, width}, DType::Float32),
                    Tensor::empty({tokens, width}, DType::Float32), {}, {}};
  float* cos_out = table.cos.data<float>();
  float* sin_out = table.sin.data<float>();
#pragma omp parallel for if (tokens > 4096)
  for (int64_t token = 0; token < tokens; ++token) {
    int64_t column = 0, rest = token;
    std::vector<int64_t> coord(grid.size());
    for (int64_t a = static_cast<int64_t>(grid.size()) - 1; a >= 0; --a) {  // last axis fastest
      coord[a] = rest % grid[a];
      rest /= grid[a];
    }
    for (size_t a = 0; a < axis_dims.size(); ++a) {
      const int64_t half = axis_dims[a] / 2;
      const float* c = axis_cos[a].data() + coord[a] * half;
      const float* s = axis_sin[a].data() + coord[a] * half;
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
