// Rotary position tables for token grids (video t/h/w, image h/w, audio t) and for tokens
// at explicit positions (Flux's ids).
#pragma once

#include <span>

#include "core/tensor.h"
#include "ops/ops.h"

namespace fastdit::nn {

struct RotaryTable {
  Tensor cos;  // [L, sum(axis_dims)] float32
  Tensor sin;
  // Under sequence parallelism, this rank's rows of cos and sin (zero on the padding past
  // the sequence's end), for kernels that rotate a shard before the all-to-all; undefined
  // otherwise.
  Tensor shard_cos;
  Tensor shard_sin;
};

// Tokens enumerate the grid with the first axis slowest (t-major, then h, then w);
// token p gets [axis0 angles | axis1 angles | ...]. Axis a with rotary width d_a uses
// frequencies theta^(-2j/d_a), j < d_a/2, at integer positions. Angles are computed in
// float64 and rounded to float32 once, as the diffusers tables are. Interleaved repeats
// each angle twice in a row; SplitHalf lays out [angles | angles] per axis.
RotaryTable rotary_grid_table(std::span<const int64_t> axis_dims, std::span<const int64_t> grid,
                              double theta, ops::RopeStyle style);

// The same rows for tokens at given positions: positions [tokens, axes] (any float or
// integer dtype, any device; read as float32, as diffusers' ids.float()), token p's row
// [axis0 angles at positions[p, 0] | axis1 angles at positions[p, 1] | ...], angles in
// float64 (Flux's FluxPosEmbed: ids per axis through get_1d_rotary_pos_embed in float64).
RotaryTable rotary_position_table(std::span<const int64_t> axis_dims, const Tensor& positions, double theta,
                                  ops::RopeStyle style);

}  // namespace fastdit::nn
