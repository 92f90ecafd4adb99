// Every elementwise op, unary or broadcasting, runs through one engine: inputs are
// walked as if expanded to out's shape (stride 0 along broadcast dims), one output row
// (last dim) per iteration.
#include <array>
#include <cmath>
#include <numbers>
#include <utility>

#include "backends/cpu/broadcast.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/float32_io.h"
#include "core/half.h"

namespace fastdit::cpu {
namespace {

template <size_t N, class Fn>
void elementwise(const std::array<const Tensor*, N>& inputs, Tensor& out, Fn fn) {
  const Shape shape = out.dim() == 0 ? Shape{1} : out.shape();
  const auto rank = static_cast<int64_t>(shape.size());
  const int64_t row_length = shape.back();
  const int64_t rows = row_length == 0 ? 0 : out.numel() / row_length;
  std::array<Tensor, N> values;
  std::array<Shape, N> strides;
  for (size_t i = 0; i < N; ++i) {
    values[i] = as_float32(*inputs[i]);
    strides[i] = broadcast_strides(values[i].shape(), shape);
  }
  Float32Output y(out);
#pragma omp parallel for if (out.numel() > (1 << 15))
  for (int64_t row = 0; row < rows; ++row) {
    std::array<const float*, N> in;
    std::array<int64_t, N> step;
    for (size_t i = 0; i < N; ++i) {
      int64_t offset = 0, rest = row;
      for (int64_t d = rank - 2; d >= 0; --d) {
        offset += rest % shape[d] * strides[i][d];
        rest /= shape[d];
      }
      in[i] = values[i].template data<float>() + offset;
      step[i] = strides[i].back();
    }
    float* yr = y.data() + row * row_length;
    for (int64_t j = 0; j < row_length; ++j) {
      yr[j] = [&]<size_t... I>(std::index_sequence<I...>) {
        return fn(in[I][j * step[I]]...);
      }(std::make_index_sequence<N>{});
    }
  }
  y.store();
}

template <class Fn>
void unary(const Tensor& x, Tensor& out, Fn fn) {
  elementwise<1>({&x}, out, fn);
}

template <class Fn>
void binary(const Tensor& a, const Tensor& b, Tensor& out, Fn fn) {
  elementwise<2>({&a, &b}, out, fn);
}

template <class Fn>
void ternary(const Tensor& a, const Tensor& b, const Tensor& c, Tensor& out, Fn fn) {
  elementwise<3>({&a, &b, &c}, out, fn);
}


}  // namespace

void gelu(const Tensor& x, ops::GeluApprox approx, Tensor& out) {
  if (approx == ops::GeluApprox::Tanh) {
    const float sqrt_2_over_pi = std::sqrt(2.0f / std::numbers::pi_v<float>);
    unary(x, out, [=](float v) {
      return 0.5f * v * (1.0f + std::tanh(sqrt_2_over_pi * (v + 0.044715f * v * v * v)));
    });
  } else {
    const float inv_sqrt2 = std::numbers::sqrt2_v<float> / 2.0f;
    unary(x, out, [=](float v) { return 0.5f * v * (1.0f + std::erf(v * inv_sqrt2)); });
  }
}

void silu(const Tensor& x, Tensor& out) {
  unary(x, out, [](float v) { return v / (1.0f + std::exp(-v)); });
}

void sigmoid(const Tensor& x, Tensor& out) {
  unary(x, out, [](float v) { return 1.0f / (1.0f + std::exp(-v)); });
}

void swiglu(const Tensor& x, Tensor& out) {
  const int64_t n = out.size(-1);
  // silu(gate) is rounded to out's dtype before the product, as a reference running the
  // two ops in that dtype rounds it.
  const auto rounded = rounder(out.dtype());
  const Tensor value = x.narrow(-1, 0, n), gate = x.narrow(-1, n, n);
  binary(value, gate, out, [&](float v, float g) { return v * rounded(g / (1.0f + std::exp(-g))); });
}

void cos(const Tensor& x, Tensor& out) {
  unary(x, out, [](float v) { return std::cos(v); });
}

void sin(const Tensor& x, Tensor& out) {
  unary(x, out, [](float v) { return std::sin(v); });
}

void scale(const Tensor& x, float factor, Tensor& out) {
  unary(x, out, [=](float v) { return v * factor; });
}

void clamp(const Tensor& x, float lo, float hi, Tensor& out) {
  unary(x, out, [=](float v) { return v < lo ? lo : (v > hi ? hi : v); });  // NaN stays NaN, as in torch
}

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  binary(a, b, out, [](float u, float v) { return u + v; });
}

void sub(const Tensor& a, const Tensor& b, Tensor& out) {
  binary(a, b, out, [](float u, float v) { return u - v; });
}

void mul(const Tensor& a, const Tensor& b, Tensor& out) {
  binary(a, b, out, [](float u, float v) { return u * v; });
}

void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, bool each_step, Tensor& out) {
  if (!each_step || out.dtype() == DType::Float32)
    return ternary(x, shift, scale, out, [](float v, float s, float c) { return v * (1.0f + c) + s; });
  const auto r = rounder(out.dtype());
  ternary(x, shift, scale, out, [=](float v, float s, float c) { return r(r(v * r(1.0f + c)) + s); });
}

void gated_add(const Tensor& residual, const Tensor& x, const Tensor& gate, bool each_step, Tensor& out) {
  if (!each_step || out.dtype() == DType::Float32)
    return ternary(residual, x, gate, out, [](float r, float v, float g) { return r + v * g; });
  const auto r = rounder(out.dtype());
  ternary(residual, x, gate, out, [=](float res, float v, float g) { return r(res + r(v * g)); });
}

}  // namespace fastdit::cpu
