// Every elementwise op, unary or broadcasting, runs through one of two kernels:
//  - contiguous: every input has out's shape and dtype; each thread moves 16-byte
//    vectors (4 float32 or 8 bfloat16/float16 per operand) when all pointers allow it,
//    single elements otherwise.
//  - strided: inputs walked as if expanded to out's shape (stride 0 along broadcast
//    dims, dims merged first), each operand loaded by its own dtype; this also serves
//    mixed-dtype inputs (out is then float32, as ops.cc decides).
// Math is float32; results are rounded to nearest even into out's dtype. out may alias
// an input of out's shape (each element is read before it is written, by one thread).
#include <cmath>
#include <cstdint>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

struct GeluErf {
  __device__ float operator()(float v) const {
    return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  }
};
struct GeluTanh {
  __device__ float operator()(float v) const {
    return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
  }
};
struct Silu {
  __device__ float operator()(float v) const { return v / (1.0f + expf(-v)); }
};
struct Sigmoid {
  __device__ float operator()(float v) const { return 1.0f / (1.0f + expf(-v)); }
};
// value · silu(gate), silu rounded to the output dtype first (as the reference's two
// ops in that dtype round it).
struct SwiGLU {
  FloatCode code;
  __device__ float operator()(float value, float gate) const {
    const float activated = gate / (1.0f + expf(-gate));
    if (code == FloatCode::BF16) return value * __bfloat162float(__float2bfloat16(activated));
    if (code == FloatCode::F16) return value * __half2float(__float2half(activated));
    return value * activated;
  }
};
struct Cos {
  __device__ float operator()(float v) const { return cosf(v); }
};
struct Sin {
  __device__ float operator()(float v) const { return sinf(v); }
};
struct Scale {
  float factor;
  __device__ float operator()(float v) const { return v * factor; }
};
struct Clamp {
  float lo, hi;
  __device__ float operator()(float v) const { return v < lo ? lo : (v > hi ? hi : v); }  // NaN stays NaN
};
struct Add {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Sub {
  __device__ float operator()(float a, float b) const { return a - b; }
};
struct Mul {
  __device__ float operator()(float a, float b) const { return a * b; }
};
// `code` F32: one rounding at the store; else each step rounded to that dtype (ops::Rounding).
struct Modulate {
  FloatCode code = FloatCode::F32;
  __device__ float operator()(float x, float shift, float scale) const {
    if (code == FloatCode::F32) return x * (1.0f + scale) + shift;
    return round_to(code, x * round_to(code, 1.0f + scale)) + shift;
  }
};
struct GatedAdd {
  FloatCode code = FloatCode::F32;
  __device__ float operator()(float residual, float x, float gate) const {
    if (code == FloatCode::F32) return residual + x * gate;
    return residual + round_to(code, x * gate);
  }
};

template <int N>
struct Operands {
  const void* in[N];
  FloatCode in_code[N];
  void* out;
  FloatCode out_code;
};

template <class Op, int N, size_t... I>
__device__ __forceinline__ float apply(const Op& op, const float (&v)[N],
                                       std::index_sequence<I...>) {
  return op(v[I]...);
}

template <class Op, class T, int N>
__global__ void elementwise_contiguous(Op op, Operands<N> operands, int64_t n, bool vectorized) {
  using V = Vector<T>;
  const int64_t vectors = vectorized ? n / V::kSize : 0;
  for (int64_t i = global_thread_index(); i < vectors; i += global_thread_count()) {
    V in[N], out;
#pragma unroll
    for (int k = 0; k < N; ++k) in[k] = static_cast<const V*>(operands.in[k])[i];
#pragma unroll
    for (int e = 0; e < V::kSize; ++e) {
      float v[N];
#pragma unroll
      for (int k = 0; k < N; ++k) v[k] = to_float(in[k].values[e]);
      out.values[e] = from_float<T>(apply(op, v, std::make_index_sequence<N>{}));
    }
    static_cast<V*>(operands.out)[i] = out;
  }
  for (int64_t i = vectors * V::kSize + global_thread_index(); i < n; i += global_thread_count()) {
    float v[N];
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = to_float(static_cast<const T*>(operands.in[k])[i]);
    static_cast<T*>(operands.out)[i] = from_float<T>(apply(op, v, std::make_index_sequence<N>{}));
  }
}

template <class Op, int N>
__global__ void elementwise_strided(Op op, Operands<N> operands, StridedIndexer<N> indexer,
                                    int64_t n) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    int64_t offset[N];
    indexer.offsets(i, offset);
    float v[N];
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = load_float(operands.in[k], operands.in_code[k], offset[k]);
    store_float(operands.out, operands.out_code, i, apply(op, v, std::make_index_sequence<N>{}));
  }
}

template <class Op, class T, int N>
void launch_contiguous(const Op& op, const Operands<N>& operands, int64_t n, cudaStream_t stream) {
  bool vectorized = reinterpret_cast<uintptr_t>(operands.out) % 16 == 0;
  for (int k = 0; k < N; ++k) vectorized &= reinterpret_cast<uintptr_t>(operands.in[k]) % 16 == 0;
  const int64_t work = vectorized ? n / Vector<T>::kSize + Vector<T>::kSize : n;
  elementwise_contiguous<Op, T, N>
      <<<grid_for(work), kThreadsPerBlock, 0, stream>>>(op, operands, n, vectorized);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

template <int N, class Op>
void elementwise(const Op& op, const std::array<const Tensor*, N>& inputs, Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(out.device());
  const cudaStream_t stream = current_stream(out.device().index);
  Operands<N> operands{};
  bool same_layout = true;
  for (int k = 0; k < N; ++k) {
    operands.in[k] = inputs[k]->data_ptr();
    operands.in_code[k] = float_code(inputs[k]->dtype());
    same_layout &= inputs[k]->dtype() == out.dtype() && inputs[k]->shape() == out.shape() &&
                   inputs[k]->is_contiguous();
  }
  operands.out = out.data_ptr();
  operands.out_code = float_code(out.dtype());
  if (same_layout) {
    switch (out.dtype()) {
      case DType::Float32: return launch_contiguous<Op, float>(op, operands, n, stream);
      case DType::BFloat16: return launch_contiguous<Op, __nv_bfloat16>(op, operands, n, stream);
      default: return launch_contiguous<Op, __half>(op, operands, n, stream);
    }
  }
  std::array<Shape, N> strides;
  for (int k = 0; k < N; ++k) strides[k] = broadcast_strides(*inputs[k], out.shape());
  const auto indexer = make_indexer<N>(out.shape(), strides);
  elementwise_strided<Op, N>
      <<<grid_for(n), kThreadsPerBlock, 0, stream>>>(op, operands, indexer, n);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void gelu(const Tensor& x, ops::GeluApprox approx, Tensor& out) {
  if (approx == ops::GeluApprox::Tanh) return elementwise<1>(GeluTanh{}, {&x}, out);
  elementwise<1>(GeluErf{}, {&x}, out);
}

void silu(const Tensor& x, Tensor& out) { elementwise<1>(Silu{}, {&x}, out); }

void sigmoid(const Tensor& x, Tensor& out) { elementwise<1>(Sigmoid{}, {&x}, out); }

void swiglu(const Tensor& x, Tensor& out) {
  const int64_t n = out.size(-1);
  const Tensor value = x.narrow(-1, 0, n), gate = x.narrow(-1, n, n);
  elementwise<2>(SwiGLU{float_code(out.dtype())}, {&value, &gate}, out);
}

void cos(const Tensor& x, Tensor& out) { elementwise<1>(Cos{}, {&x}, out); }

void sin(const Tensor& x, Tensor& out) { elementwise<1>(Sin{}, {&x}, out); }

void scale(const Tensor& x, float factor, Tensor& out) { elementwise<1>(Scale{factor}, {&x}, out); }
void clamp(const Tensor& x, float lo, float hi, Tensor& out) { elementwise<1>(Clamp{lo, hi}, {&x}, out); }

void add(const Tensor& a, const Tensor& b, Tensor& out) { elementwise<2>(Add{}, {&a, &b}, out); }

void sub(const Tensor& a, const Tensor& b, Tensor& out) { elementwise<2>(Sub{}, {&a, &b}, out); }

void mul(const Tensor& a, const Tensor& b, Tensor& out) { elementwise<2>(Mul{}, {&a, &b}, out); }

void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, bool each_step, Tensor& out) {
  elementwise<3>(Modulate{each_step ? float_code(out.dtype()) : FloatCode::F32}, {&x, &shift, &scale}, out);
}

void gated_add(const Tensor& residual, const Tensor& x, const Tensor& gate, bool each_step, Tensor& out) {
  if (!each_step && gated_add_by_rows(residual, x, gate, out)) return;
  elementwise<3>(GatedAdd{each_step ? float_code(out.dtype()) : FloatCode::F32}, {&residual, &x, &gate}, out);
}

}  // namespace fastdit::cuda
