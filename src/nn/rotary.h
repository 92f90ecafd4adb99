// Rotary position tables for token grids (video t/h/w, image h/w, audio t) and for tokens
// at explicit positions (Flux's ids).
#pragma once

#include <map>
#include <span>
#include <tuple>
#include <vector>

#include "core/tensor.h"
#include "nn/sequence_parallel.h"
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

// How a table's angles are computed. Float64: in float64, cos/sin rounded to float32 once
// (diffusers' float64 tables: Wan). Float32: every step in float32, as
// get_1d_rotary_pos_embed with its default freqs_dtype computes it (Stable Audio's
// pipeline): freq = 1 / theta^(2j/d), angle = position · freq, then cos and sin.
enum class AnglePrecision { Float64, Float32 };

// Tokens enumerate the grid with the first axis slowest (t-major, then h, then w);
// token p gets [axis0 angles | axis1 angles | ...]. Axis a with rotary width d_a uses
// frequencies theta^(-2j/d_a), j < d_a/2, at integer positions. Interleaved repeats each
// angle twice in a row; SplitHalf lays out [angles | angles] per axis.
RotaryTable rotary_grid_table(std::span<const int64_t> axis_dims, std::span<const int64_t> grid,
                              double theta, ops::RopeStyle style,
                              AnglePrecision precision = AnglePrecision::Float64);

// The same rows for tokens at given positions: positions [tokens, axes] (any float or
// integer dtype, any device; read as float32, as diffusers' ids.float()), token p's row
// [axis0 angles at positions[p, 0] | axis1 angles at positions[p, 1] | ...], angles in
// float64 (Flux's FluxPosEmbed: ids per axis through get_1d_rotary_pos_embed in float64).
RotaryTable rotary_position_table(std::span<const int64_t> axis_dims, const Tensor& positions, double theta,
                                  ops::RopeStyle style);

// Tables from fractional per-token coordinates (LTX-2's audio-video RoPE): coords
// [B, axes, N] float32 (a token's position on each axis, e.g. its patch's midpoint in
// seconds or pixels), each axis divided by its max_pos; S = dim / (2·axes) frequencies
// f_k = theta^(k / (S − 1))·π/2 (linspace exponents; float64 then rounded to float32, or
// float32 throughout, by precision), angle[b, n, k·axes + a] = (2·coords[b, a, n]/max_pos[a]
// − 1)·f_k in float32. The dim/2 − S·axes angles left over are padding at the front
// (cos 1, sin 0). Laid out for ops::rope on x [B, N, dim] viewed as [B, N, heads, dim/heads]:
//   Interleaved: cos/sin [B, N, heads, dim/heads], the flat dim/2 angles each twice in a row;
//   SplitHalf:   the dim/2 angles cut into heads slices of r = dim/(2·heads), head h's row
//                [slice_h | slice_h] (every head its own frequencies).
RotaryTable rotary_coordinate_table(const Tensor& coords, std::span<const float> max_pos, int64_t dim,
                                    int64_t heads, double theta, ops::RopeStyle style,
                                    AnglePrecision precision);

// The tables of one layout, built once per grid and device and kept: a denoising loop asks
// for the same one every step, and a captured forward reads the table of its grid on every
// replay and must not find it freed. Under sequence parallelism each carries this rank's
// rows too.
class RotaryTableCache {
 public:
  RotaryTableCache(std::vector<int64_t> axis_dims, double theta, ops::RopeStyle style,
                   AnglePrecision precision = AnglePrecision::Float64)
      : axis_dims_(std::move(axis_dims)), theta_(theta), style_(style), precision_(precision) {}
  const RotaryTable& get(std::span<const int64_t> grid, Device device, const SequenceParallel& parallel) const;

 private:
  using Key = std::tuple<Shape, DeviceType, int>;
  std::vector<int64_t> axis_dims_;
  double theta_;
  ops::RopeStyle style_;
  AnglePrecision precision_;
  mutable std::map<Key, RotaryTable> cached_;
};

}  // namespace fastdit::nn
