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
  const int64_t tokens = shape_numel(grid);
  RotaryTable table{Tensor::empty({tokens, width}, DType::Float32),
                    Tensor::empty({tokens, width}, DType::Float32)};
  float* cos_out = table.cos.data<float>();
  float* sin_out = table.sin.data<float>();
  for (int64_t token = 0; token < tokens; ++token) {
    // Decompose the token index into grid coordinates, last axis fastest.
    std::vector<int64_t> coord(grid.size());
    for (int64_t a = static_cast<int64_t>(grid.size()) - 1, rest = token; a >= 0; --a) {
      coord[a] = rest % grid[a];
      rest /= grid[a];
    }
    int64_t column = 0;
    for (size_t a = 0; a < axis_dims.size(); ++a) {
      const int64_t d = axis_dims[a], half = d / 2;
      for (int64_t j = 0; j < half; ++j) {
        const double freq = 1.0 / std::pow(theta, static_cast<double>(2 * j) / static_cast<double>(d));
        const double angle = static_cast<double>(coord[a]) * freq;
        const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
        const int64_t first = style == ops::RopeStyle::Interleaved ? column + 2 * j : column + j;
        const int64_t second = style == ops::RopeStyle::Interleaved ? first + 1 : first + half;
        cos_out[token * width + first] = cos_out[token * width + second] = c;
        sin_out[token * width + first] = sin_out[token * width + second] = s;
      }
      column += d;
    }
  }
  return table;
}

}  // namespace fastdit::nn
