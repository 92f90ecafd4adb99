#include "nn/rotary.h"

#include <cmath>

namespace fastdit::nn {

RotaryTable rotary_grid_table(std::span<const int64_t> axis_dims, std::span<const int64_t> grid,
                              double theta, ops::RopeStyle style) {
  FASTDIT_CHECK(axis_dims.size() == grid.size(), "rotary table: ", axis_dims.size(),
                " axis widths for a grid of rank ", grid.size());
  int64_t width = 0;
  for (int64_t d : axis_dims) {
    FASTDIT_CHECK(d % 2 == 0 && d >= 0, "rotary table: axis width ", d, " must be even");
    width += d;
  }
  // Each axis's [positions, d_a/2] cos/sin once (float64 angles, rounded to float32), then
  // every token's row is a gather of its coordinates' rows: the transcendental work is
  // per axis position, not per token.
  std::vector<std::vector<float>> axis_cos(grid.size()), axis_sin(grid.size());
  for (size_t a = 0; a < grid.size(); ++a) {
    const int64_t half = axis_dims[a] / 2;
    axis_cos[a].resize(static_cast<size_t>(grid[a] * half));
    axis_sin[a].resize(axis_cos[a].size());
    for (int64_t j = 0; j < half; ++j) {
      const double freq = 1.0 / std::pow(theta, static_cast<double>(2 * j) / static_cast<double>(axis_dims[a]));
      for (int64_t pos = 0; pos < grid[a]; ++pos) {
        const double angle = static_cast<double>(pos) * freq;
        axis_cos[a][pos * half + j] = static_cast<float>(std::cos(angle));
        axis_sin[a][pos * half + j] = static_cast<float>(std::sin(angle));
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

}  // namespace fastdit::nn
