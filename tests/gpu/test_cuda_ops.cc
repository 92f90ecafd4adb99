// Every CUDA kernel against its CPU twin (fastdit::cpu::, the oracle) on random inputs of
// awkward shapes, plus the allocator and copy/convert. The GPU output is poisoned with
// NaN first, so an element a kernel forgets to write fails the comparison.
// Tolerances: float32 max |gpu − cpu| <= 1e-5 · max(1, max |cpu|) (TF32 is never used);
// bfloat16 / float16 rel_l2 <= 1e-2 and max |gpu − cpu| <= 2e-2 · max |cpu|.
#include <cudnn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cuda/attention.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "core/half.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

using testing::random_tensor;

const Device kGpu = Device::cuda(0);
constexpr DType kFloatTypes[] = {DType::Float32, DType::BFloat16, DType::Float16};

Tensor random_in(DType dtype, const Shape& shape, uint64_t seed, float lo = -1.0f,
                 float hi = 1.0f) {
  return random_tensor(shape, seed, lo, hi).to(dtype);
}

Tensor on_gpu(const Tensor& t) { return t.defined() ? t.to(kGpu) : t; }
template <class T>
const T& on_gpu(const T& value) {
  return value;
}

// All-ones bits: NaN in float32, bfloat16 and float16.
Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype, kGpu);
  EXPECT_EQ(cudaMemsetAsync(t.data_ptr(), 0xff, t.nbytes(), cuda::current_stream(0)), cudaSuccess);
  return t;
}

struct Comparison {
  double max_abs = 0, max_ref = 0, rel_l2 = 0;
};

Comparison compare(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  const std::vector<float> got = gpu.to_float_vector(), want = cpu.to_float_vector();
  Comparison c;
  EXPECT_EQ(got.size(), want.size()) << what;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    if (!std::isfinite(got[i])) {
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << " (expected " << want[i]
                    << ")";
      return c;
    }
    const double diff = std::fabs(double(got[i]) - want[i]);
    c.max_abs = std::max(c.max_abs, diff);
    c.max_ref = std::max(c.max_ref, std::fabs(double(want[i])));
    num += diff * diff;
    den += double(want[i]) * want[i];
  }
  c.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return c;
}

Comparison expect_matches(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  const Comparison c = compare(gpu, cpu, what);
  if (gpu.dtype() == DType::Float32) {
    EXPECT_LE(c.max_abs, 1e-5 * std::max(1.0, c.max_ref)) << what;
  } else {
    EXPECT_LE(c.rel_l2, 1e-2) << what;
    EXPECT_LE(c.max_abs, 2e-2 * std::max(c.max_ref, 1e-3)) << what;
  }
  return c;
}

// Equal values, every element written (NaN poison fails).
void expect_identical(const Tensor& got, const Tensor& want, const std::string& what) {
  EXPECT_EQ(compare(got, want, what).max_abs, 0.0) << what;
}

std::string label(const char* op, DType dtype, const Shape& shape) {
  return std::string(op) + " " + dtype_name(dtype) + shape_str(shape);
}

// Runs the CPU kernel on `args` and the CUDA kernel on their GPU copies, each into a
// fresh output of `shape` and `dtype`, and compares.
template <class... Params, class... Args>
Comparison expect_kernels_agree(const std::string& what, void (*cpu_kernel)(Params...),
                                std::type_identity_t<void (*)(Params...)> cuda_kernel,
                                const Shape& shape, DType dtype, const Args&... args) {
  Tensor cpu_out = Tensor::empty(shape, dtype);
  Tensor gpu_out = poisoned(shape, dtype);
  cpu_kernel(args..., cpu_out);
  cuda_kernel(on_gpu(args)..., gpu_out);
  return expect_matches(gpu_out, cpu_out, what);
}

// ---- device: allocator and copies ---------------------------------------------------------

TEST(CudaAllocator, ReusesFreedBlocksAndRoundsSizes) {
  { const Tensor warm = Tensor::empty({1 << 20}, DType::Float32, kGpu); }
  const cuda::MemoryStats before = cuda::cuda_memory_stats(0);
  {
    const Tensor again = Tensor::empty({1 << 20}, DType::Float32, kGpu);  // 4 MiB, same bucket
    const cuda::MemoryStats during = cuda::cuda_memory_stats(0);
    EXPECT_EQ(during.reserved_bytes, before.reserved_bytes);
    EXPECT_EQ(during.allocated_bytes, before.allocated_bytes + (size_t{4} << 20));
  }
  {
    const Tensor small = Tensor::empty({1000}, DType::UInt8, kGpu);
    EXPECT_EQ(cuda::cuda_memory_stats(0).allocated_bytes, before.allocated_bytes + 1024);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(small.data_ptr()) % 512, 0u);
  }
  const cuda::MemoryStats after = cuda::cuda_memory_stats(0);
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
  EXPECT_GE(after.peak_allocated_bytes, before.allocated_bytes + (size_t{4} << 20));
  cuda::empty_cache();
  EXPECT_EQ(cuda::cuda_memory_stats(0).reserved_bytes, after.allocated_bytes);
}

TEST(CudaCopy, FloatConversionsRoundLikeTheCpu) {
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               1.00390625f,
                               1.01171875f,
                               65504.0f,
                               65520.0f,
                               1e-8f,
                               -3.0e-39f,
                               1e30f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity()};
  const Tensor noise = random_tensor({1000}, 7, -100.0f, 100.0f);
  for (float v : noise.to_float_vector()) values.push_back(v);
  const Tensor source = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  for (DType low : {DType::BFloat16, DType::Float16}) {
    const Tensor on_device = source.to(kGpu).to(low);
    const Tensor expected = source.to(low), got = on_device.to(Device::cpu());
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_EQ(got.data<uint16_t>()[i], expected.data<uint16_t>()[i])
          << dtype_name(low) << " of " << values[i];
    }
    const Tensor back = on_device.to(DType::Float32).to(Device::cpu());
    EXPECT_EQ(back.to_float_vector(), expected.to(DType::Float32).to_float_vector());
  }
}

TEST(CudaCopy, StridedGatherWithAndWithoutConversion) {
  const Tensor base = random_tensor({3, 4, 5, 6}, 3);
  const Tensor permuted = base.permute({2, 0, 3, 1}).narrow(1, 1, 2);
  const Tensor gpu = base.to(kGpu).permute({2, 0, 3, 1}).narrow(1, 1, 2);
  ASSERT_FALSE(gpu.is_contiguous());
  EXPECT_EQ(gpu.contiguous().to_float_vector(), permuted.contiguous().to_float_vector());
  EXPECT_EQ(gpu.to(DType::BFloat16).to_float_vector(),
            permuted.to(DType::BFloat16).to_float_vector());
  // Eight dims that cannot merge.
  const Tensor eight = random_tensor({2, 3, 2, 3, 2, 3, 2, 3}, 4);
  const Tensor reversed = eight.permute({7, 6, 5, 4, 3, 2, 1, 0});
  EXPECT_EQ(eight.to(kGpu).permute({7, 6, 5, 4, 3, 2, 1, 0}).contiguous().to_float_vector(),
            reversed.contiguous().to_float_vector());
}

// Permutes that keep whole 16-byte rows move as vectors (sequence parallelism's peer-major
// packing); rows that are not whole vectors, or a start off 16 bytes, take the element path.
TEST(CudaCopy, RowPreservingPermutesInEveryDtypeAndAlignment) {
  for (DType dtype : kFloatTypes) {
    for (int64_t row : {64, 36, 8}) {  // bf16: 128, 72, 16 bytes; f32: 256, 144, 32 bytes
      const Tensor base = random_tensor({3, 40, 2, 5, row}, 20 + row).to(dtype);
      const Tensor gpu = base.to(kGpu);
      for (int64_t first : {0, 1}) {  // narrow by one row of 5: shifts the start by row elements
        const Tensor want = base.permute({2, 0, 1, 3, 4}).narrow(3, first, 4).contiguous();
        Tensor got = gpu.permute({2, 0, 1, 3, 4}).narrow(3, first, 4).contiguous();
        EXPECT_EQ(got.to_float_vector(), want.to_float_vector()) << dtype_name(dtype) << " row " << row;
      }
      // Rows one element short, starting one element in: never whole 16-byte vectors.
      EXPECT_EQ(gpu.permute({2, 0, 1, 3, 4}).narrow(4, 1, row - 1).contiguous().to_float_vector(),
                base.permute({2, 0, 1, 3, 4}).narrow(4, 1, row - 1).contiguous().to_float_vector());
    }
  }
}

// Sources contiguous along the output's rows take the tiled transpose: sizes that are
// not multiples of its 32x32 tile, a batch dim, with and without a conversion.
TEST(CudaCopy, TransposesThroughTiles) {
  for (const Shape& shape : {Shape{45, 70}, Shape{3, 70, 45}, Shape{1, 1536, 1000}}) {
    const Tensor base = random_tensor(shape, 5);
    const int64_t last = static_cast<int64_t>(shape.size()) - 1;
    const Tensor expected = base.transpose(last - 1, last).contiguous();
    const Tensor gpu = base.to(kGpu).transpose(last - 1, last);
    EXPECT_EQ(gpu.contiguous().to_float_vector(), expected.to_float_vector()) << shape_str(shape);
    EXPECT_EQ(gpu.to(DType::BFloat16).to_float_vector(), expected.to(DType::BFloat16).to_float_vector())
        << shape_str(shape);
    const Tensor half = base.to(DType::Float16);
    EXPECT_EQ(half.to(kGpu).transpose(last - 1, last).contiguous().to_float_vector(),
              half.transpose(last - 1, last).contiguous().to_float_vector())
        << shape_str(shape);
  }
}

TEST(CudaCopy, IntegersCopyAndConvert) {
  const Tensor ints = Tensor::from_vector<int64_t>({1, -2, 3, 1LL << 40, 5, 6}, {2, 3});
  const Tensor gpu = ints.to(kGpu);
  const Tensor transposed = gpu.transpose(0, 1).contiguous().to(Device::cpu());
  const int64_t expected[] = {1, 1LL << 40, -2, 5, 3, 6};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(transposed.data<int64_t>()[i], expected[i]);
  EXPECT_EQ(gpu.to(DType::Float32).to_float_vector(), ints.to(DType::Float32).to_float_vector());
  EXPECT_EQ(Tensor::zeros({5}, DType::Float32, kGpu).to_float_vector(),
            std::vector<float>(5, 0.0f));
}

// ---- linear --------------------------------------------------------------------------------

struct LinearCase {
  Shape x, weight;
  bool bias;
};
const LinearCase kLinearCases[] = {
    {{2, 7, 33}, {17, 33}, true},      {{1, 1}, {1, 1}, true},
    {{5, 64}, {3, 64}, false},         {{3}, {4, 3}, true},
    {{2, 3, 5, 129}, {31, 129}, true}, {{3, 77, 320}, {640, 320}, true}};

Shape linear_out_shape(const LinearCase& c) {
  Shape out = c.x;
  out.back() = c.weight[0];
  return out;
}

TEST(CudaLinear, MatchesCpuForEveryDtype) {
  uint64_t seed = 100;
  for (DType dtype : kFloatTypes) {
    for (const auto& c : kLinearCases) {
      const Tensor x = random_in(dtype, c.x, seed++), w = random_in(dtype, c.weight, seed++);
      const Tensor b = c.bias ? random_in(dtype, {c.weight[0]}, seed++) : Tensor{};
      const Comparison r = expect_kernels_agree(label("linear", dtype, c.x), cpu::linear,
                                                cuda::linear, linear_out_shape(c), dtype, x, w, b);
      std::printf("linear %-8s x%-16s w%-10s max_abs %.2e rel_l2 %.2e\n", dtype_name(dtype),
                  shape_str(c.x).c_str(), shape_str(c.weight).c_str(), r.max_abs, r.rel_l2);
    }
  }
}

TEST(CudaLinear, MixedDtypesAndUnalignedPointers) {
  const Tensor x = random_in(DType::BFloat16, {9, 40}, 1);
  const Tensor w32 = random_in(DType::Float32, {24, 40}, 2),
               b32 = random_in(DType::Float32, {24}, 3);
  expect_kernels_agree("linear bf16 x, f32 weight and bias", cpu::linear, cuda::linear, {9, 24},
                       DType::BFloat16, x, w32, b32);
  // x and bias starting 2 bytes past an allocation: cuBLASLt must be told, or fall back.
  const Tensor x_unaligned =
      random_in(DType::BFloat16, {1 + 9 * 40}, 4).narrow(0, 1, 9 * 40).reshape({9, 40});
  const Tensor b_unaligned = random_in(DType::BFloat16, {25}, 5).narrow(0, 1, 24);
  const Tensor w = random_in(DType::BFloat16, {24, 40}, 6);
  Tensor out_cpu = Tensor::empty({9, 24}, DType::BFloat16);
  cpu::linear(x_unaligned.contiguous(), w, b_unaligned.contiguous(), out_cpu);
  const Tensor xg =
      random_in(DType::BFloat16, {1 + 9 * 40}, 4).to(kGpu).narrow(0, 1, 9 * 40).reshape({9, 40});
  const Tensor bg = random_in(DType::BFloat16, {25}, 5).to(kGpu).narrow(0, 1, 24);
  Tensor out_gpu = poisoned({9, 24}, DType::BFloat16);
  cuda::linear(xg, w.to(kGpu), bg, out_gpu);
  expect_matches(out_gpu, out_cpu, "linear on 2-byte-aligned x and bias");
}

TEST(CudaLinear, GeluTanhEpilogue) {
  uint64_t seed = 200;
  for (DType dtype : kFloatTypes) {
    for (const auto& c : kLinearCases) {
      const Tensor x = random_in(dtype, c.x, seed++), w = random_in(dtype, c.weight, seed++);
      const Tensor b = c.bias ? random_in(dtype, {c.weight[0]}, seed++) : Tensor{};
      Tensor projected = Tensor::empty(linear_out_shape(c), DType::Float32);
      Tensor expected = Tensor::empty(linear_out_shape(c), DType::Float32);
      cpu::linear(x.to(DType::Float32), w.to(DType::Float32),
                  b.defined() ? b.to(DType::Float32) : b, projected);
      cpu::gelu(projected, ops::GeluApprox::Tanh, expected);
      Tensor out = poisoned(projected.shape(), dtype);
      cuda::linear_gelu_tanh(on_gpu(x), on_gpu(w), on_gpu(b), out);
      expect_matches(out, expected.to(dtype), label("linear_gelu_tanh", dtype, c.x));
    }
  }
}

// ---- norms ---------------------------------------------------------------------------------

TEST(CudaNorms, LayerNormAndRmsNorm) {
  uint64_t seed = 300;
  // Rows of whole 16-byte runs take the vectorised kernel (one to eight warps per row),
  // the others and rows too long for registers ({2, 20000}) the generic one.
  const Shape shapes[] = {{3, 1},         {5, 33},         {2, 7, 1000}, {4097},
                          {2, 3, 3072},   {33, 1536},      {2, 9, 5120}, {2, 20000}};
  for (DType dtype : kFloatTypes) {
    for (const Shape& shape : shapes) {
      const int64_t d = shape.back();
      const Tensor x = random_in(dtype, shape, seed++, -3.0f, 5.0f);
      const Tensor w = random_in(DType::Float32, {d}, seed++), b = random_in(dtype, {d}, seed++);
      expect_kernels_agree(label("layer_norm", dtype, shape), cpu::layer_norm, cuda::layer_norm,
                           shape, dtype, x, w, b, 1e-6f);
      expect_kernels_agree(label("layer_norm no affine", dtype, shape), cpu::layer_norm,
                           cuda::layer_norm, shape, dtype, x, Tensor{}, Tensor{}, 1e-5f);
      expect_kernels_agree(label("rms_norm", dtype, shape), cpu::rms_norm, cuda::rms_norm, shape,
                           dtype, x, w, 1e-6f);
      expect_kernels_agree(label("rms_norm no weight", dtype, shape), cpu::rms_norm, cuda::rms_norm,
                           shape, dtype, x, Tensor{}, 1e-6f);
    }
  }
}

// layer_norm(x) · (1 + scale) + shift in float32 on the CPU, rounded to `dtype`.
Tensor modulated_norm_on_cpu(const Tensor& x, const Tensor& shift, const Tensor& scale, DType dtype) {
  Tensor normalized = Tensor::empty(x.shape(), DType::Float32), expected = Tensor::empty(x.shape(), DType::Float32);
  cpu::layer_norm(x.to(DType::Float32), {}, {}, 1e-6f, normalized);
  cpu::modulate(normalized, shift.to(DType::Float32), scale.to(DType::Float32), expected);
  return expected.to(dtype);
}

TEST(CudaNorms, LayerNormModulate) {
  uint64_t seed = 400;
  for (DType dtype : kFloatTypes) {
    for (int64_t d : {int64_t{96}, int64_t{1536}, int64_t{100}, int64_t{5120}}) {
      for (int64_t modulation_rows : {int64_t{1}, int64_t{37}}) {
        const Shape shape{2, 37, d};
        const Tensor x = random_in(dtype, shape, seed++, -2.0f, 3.0f);
        const Tensor shift = random_in(DType::Float32, {2, modulation_rows, d}, seed++);
        const Tensor scale = random_in(dtype, {2, modulation_rows, d}, seed++);
        Tensor out = poisoned(shape, dtype);
        cuda::layer_norm_modulate(on_gpu(x), on_gpu(shift), on_gpu(scale), 1e-6f, out);
        expect_matches(out, modulated_norm_on_cpu(x, shift, scale, dtype),
                       label("layer_norm_modulate", dtype, {2, modulation_rows, d}));
      }
    }
  }
}

// add_layer_norm against the CPU kernels in sequence, and bit for bit against the CUDA
// norm of its own sum (the fused kernel must normalise the rounded sum it stores).
TEST(CudaNorms, AddLayerNorm) {
  uint64_t seed = 450;
  for (DType dtype : kFloatTypes) {
    for (int64_t d : {int64_t{96}, int64_t{1536}, int64_t{100}, int64_t{5120}}) {
      const Shape shape{2, 37, d};
      const Tensor residual = random_in(dtype, shape, seed++, -2.0f, 3.0f);
      const Tensor same = random_in(dtype, shape, seed++), wide = random_in(DType::Float32, shape, seed++);
      const Tensor w = random_in(DType::Float32, {d}, seed++), b = random_in(DType::Float32, {d}, seed++);
      for (int64_t gate_rows : {int64_t{0}, int64_t{1}, int64_t{37}}) {  // 0: no gate
        const int64_t rows = gate_rows == 0 ? 1 : gate_rows;
        const Tensor gate = gate_rows ? random_in(DType::Float32, {2, rows, d}, seed++) : Tensor{};
        const Tensor shift = random_in(DType::Float32, {2, rows, d}, seed++);
        const Tensor scale = random_in(dtype, {2, rows, d}, seed++);
        for (const Tensor* x : {&same, &wide}) {
          const std::string what = label("add_layer_norm", dtype, shape) + " gate rows " + std::to_string(gate_rows) +
                                   " x " + dtype_name(x->dtype());
          Tensor sum = Tensor::empty(shape, dtype), affine = Tensor::empty(shape, dtype);
          if (gate.defined()) {
            cpu::gated_add(residual, *x, gate, sum);
          } else {
            cpu::add(residual, *x, sum);
          }
          cpu::layer_norm(sum, w, b, 1e-6f, affine);
          Tensor got_sum = poisoned(shape, dtype), got_normed = poisoned(shape, dtype);
          cuda::add_layer_norm(on_gpu(residual), on_gpu(*x), on_gpu(gate), on_gpu(w), on_gpu(b), {}, {}, 1e-6f,
                               got_sum, got_normed);
          expect_matches(got_sum, sum, what + " sum");
          expect_matches(got_normed, affine, what + " affine");
          Tensor again = poisoned(shape, dtype);
          cuda::layer_norm(got_sum, on_gpu(w), on_gpu(b), 1e-6f, again);
          expect_identical(again, got_normed, what + " affine, against its own sum");

          cuda::add_layer_norm(on_gpu(residual), on_gpu(*x), on_gpu(gate), {}, {}, on_gpu(shift), on_gpu(scale),
                               1e-6f, got_sum, got_normed);
          expect_matches(got_normed, modulated_norm_on_cpu(sum, shift, scale, dtype), what + " modulated");
          cuda::layer_norm_modulate(got_sum, on_gpu(shift), on_gpu(scale), 1e-6f, again);
          expect_identical(again, got_normed, what + " modulated, against its own sum");
        }
      }
    }
  }
  // Operands that are not 16-byte aligned take the unfused kernels: same results.
  const Shape shape{2, 37, 1536};
  const int64_t n = shape_numel(shape);
  const Tensor residual = random_in(DType::BFloat16, {n + 1}, seed++), x = random_in(DType::BFloat16, shape, seed++);
  const Tensor gate = random_in(DType::Float32, {2, 1, 1536}, seed++);
  const Tensor w = random_in(DType::Float32, {1536}, seed++), b = random_in(DType::Float32, {1536}, seed++);
  const Tensor unaligned = on_gpu(residual).narrow(0, 1, n).reshape(shape);
  Tensor sum = Tensor::empty(shape, DType::BFloat16), affine = Tensor::empty(shape, DType::BFloat16);
  cpu::gated_add(residual.narrow(0, 1, n).reshape(shape), x, gate, sum);
  cpu::layer_norm(sum, w, b, 1e-6f, affine);
  Tensor got_sum = poisoned(shape, DType::BFloat16), got_normed = poisoned(shape, DType::BFloat16);
  cuda::add_layer_norm(unaligned, on_gpu(x), on_gpu(gate), on_gpu(w), on_gpu(b), {}, {}, 1e-6f, got_sum, got_normed);
  expect_matches(got_sum, sum, "add_layer_norm unaligned sum");
  expect_matches(got_normed, affine, "add_layer_norm unaligned affine");
}

// ---- elementwise ---------------------------------------------------------------------------

TEST(CudaElementwise, Activations) {
  uint64_t seed = 500;
  const Shape shapes[] = {{1}, {7, 13, 5}, {1000003}};
  for (DType dtype : kFloatTypes) {
    for (const Shape& shape : shapes) {
      const Tensor x = random_in(dtype, shape, seed++, -6.0f, 6.0f);
      expect_kernels_agree(label("gelu", dtype, shape), cpu::gelu, cuda::gelu, shape, dtype, x,
                           ops::GeluApprox::None);
      expect_kernels_agree(label("gelu tanh", dtype, shape), cpu::gelu, cuda::gelu, shape, dtype, x,
                           ops::GeluApprox::Tanh);
      expect_kernels_agree(label("silu", dtype, shape), cpu::silu, cuda::silu, shape, dtype, x);
      expect_kernels_agree(label("scale", dtype, shape), cpu::scale, cuda::scale, shape, dtype, x,
                           -0.37f);
      expect_kernels_agree(label("cos", dtype, shape), cpu::cos, cuda::cos, shape, dtype, x);
      expect_kernels_agree(label("sin", dtype, shape), cpu::sin, cuda::sin, shape, dtype, x);
    }
  }
}

// value · silu(gate) over the halves of the last dim, silu rounded to the dtype first.
TEST(CudaElementwise, SwiGLU) {
  uint64_t seed = 520;
  for (DType dtype : kFloatTypes) {
    for (const Shape& shape : {Shape{1, 2}, Shape{3, 7, 38}, Shape{2, 1025, 2 * 6144}}) {
      const Tensor x = random_in(dtype, shape, seed++, -6.0f, 6.0f);
      Shape out = shape;
      out.back() /= 2;
      expect_kernels_agree(label("swiglu", dtype, shape), cpu::swiglu, cuda::swiglu, out, dtype, x);
    }
  }
}

Shape broadcast(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()), 1);
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t da = i < a.size() ? a[a.size() - 1 - i] : 1,
                  db = i < b.size() ? b[b.size() - 1 - i] : 1;
    out[out.size() - 1 - i] = std::max(da, db);
  }
  return out;
}

TEST(CudaElementwise, BinaryBroadcasting) {
  const std::pair<Shape, Shape> cases[] = {{{2, 3, 5}, {2, 3, 5}}, {{2, 3, 5}, {5}},
                                           {{2, 1, 5}, {1, 3, 1}}, {{4, 1}, {3}},
                                           {{1}, {6, 7}},          {{2, 300, 257}, {2, 1, 257}}};
  uint64_t seed = 600;
  for (DType dtype : kFloatTypes) {
    for (const auto& [sa, sb] : cases) {
      const Tensor a = random_in(dtype, sa, seed++), b = random_in(dtype, sb, seed++);
      const Shape out = broadcast(sa, sb);
      expect_kernels_agree(label("add", dtype, out), cpu::add, cuda::add, out, dtype, a, b);
      expect_kernels_agree(label("sub", dtype, out), cpu::sub, cuda::sub, out, dtype, a, b);
      expect_kernels_agree(label("mul", dtype, out), cpu::mul, cuda::mul, out, dtype, a, b);
    }
  }
  // Mixed dtypes promote to float32.
  const Tensor a = random_in(DType::BFloat16, {3, 8}, 1), b = random_in(DType::Float16, {8}, 2);
  expect_kernels_agree("add bf16 + f16", cpu::add, cuda::add, {3, 8}, DType::Float32, a, b);
}

TEST(CudaElementwise, ModulateAndGatedAdd) {
  uint64_t seed = 700;
  for (DType dtype : kFloatTypes) {
    const Shape x_shape{2, 37, 96};
    for (const Shape& mod : {Shape{2, 1, 96}, Shape{2, 37, 96}, Shape{96}}) {
      const Tensor x = random_in(dtype, x_shape, seed++), shift = random_in(dtype, mod, seed++);
      const Tensor scale = random_in(dtype, mod, seed++);
      expect_kernels_agree(label("modulate", dtype, mod), cpu::modulate, cuda::modulate, x_shape,
                           dtype, x, shift, scale);
      expect_kernels_agree(label("gated_add", dtype, mod), cpu::gated_add, cuda::gated_add, x_shape,
                           dtype, x, random_in(dtype, x_shape, seed++), scale);
    }
  }
  const Tensor x = random_in(DType::BFloat16, {2, 5, 16}, 1);
  const Tensor shift = random_in(DType::Float32, {2, 1, 16}, 2),
               scale = random_in(DType::Float32, {2, 1, 16}, 3);
  expect_kernels_agree("modulate bf16 x, f32 shift/scale", cpu::modulate, cuda::modulate,
                       {2, 5, 16}, DType::Float32, x, shift, scale);
}

// The Wan block's gated residual: bfloat16 stream, float32 gate per batch item or per
// token, written to a new tensor and in place.
TEST(CudaElementwise, GatedAddResidualRows) {
  uint64_t seed = 750;
  for (DType dtype : kFloatTypes) {
    const Shape shape{2, 300, 1536};
    for (const Shape& gate_shape : {Shape{2, 1, 1536}, Shape{2, 300, 1536}}) {
      const Tensor residual = random_in(dtype, shape, seed++), x = random_in(dtype, shape, seed++);
      const Tensor gate = random_in(DType::Float32, gate_shape, seed++);
      expect_kernels_agree(label("gated_add rows", dtype, gate_shape), cpu::gated_add, cuda::gated_add, shape,
                           dtype, residual, x, gate);
      Tensor expected = Tensor::empty(shape, dtype);
      cpu::gated_add(residual, x, gate, expected);
      Tensor in_place = on_gpu(residual);
      cuda::gated_add(in_place, on_gpu(x), on_gpu(gate), in_place);
      expect_matches(in_place, expected, label("gated_add in place", dtype, gate_shape));
    }
  }
}

// ---- fused row kernels ---------------------------------------------------------------------

// The vectorised kernel serves interleaved pairs with head dims of whole 16-byte runs;
// the others (head dim 20 in 16-bit types, split-half pairs) take the per-row kernel.
TEST(CudaFused, QkvNormRope) {
  struct Case {
    int64_t heads, head_dim;
    ops::RopeStyle style;
  };
  // 40 x 128: Wan 14B's width, whose last run per thread is ragged across a group of 256.
  const Case cases[] = {{12, 128, ops::RopeStyle::Interleaved},
                        {40, 128, ops::RopeStyle::Interleaved},
                        {2, 48, ops::RopeStyle::Interleaved},
                        {2, 20, ops::RopeStyle::Interleaved},
                        {3, 16, ops::RopeStyle::SplitHalf}};
  uint64_t seed = 800;
  for (DType dtype : kFloatTypes) {
    for (const Case& c : cases) {
      const int64_t d = c.heads * c.head_dim, seq = 37;
      const Tensor qkv = random_in(dtype, {2, seq, 3 * d}, seed++, -2.0f, 2.0f);
      const Tensor norm_q = random_in(dtype, {d}, seed++, 0.5f, 1.5f);
      const Tensor norm_k = random_in(dtype, {d}, seed++, 0.5f, 1.5f);
      const Tensor cos = random_in(DType::Float32, {seq, c.head_dim}, seed++),
                   sin = random_in(DType::Float32, {seq, c.head_dim}, seed++);
      const ops::QKV expected = ops::qkv_norm_rope(qkv, norm_q, norm_k, 1e-6f, c.heads, cos, sin, c.style);
      const Shape shape{2, seq, c.heads, c.head_dim};
      Tensor q = poisoned(shape, dtype), k = poisoned(shape, dtype), v = poisoned(shape, dtype);
      cuda::qkv_norm_rope(on_gpu(qkv), on_gpu(norm_q), on_gpu(norm_k), 1e-6f, on_gpu(cos), on_gpu(sin), c.style, q,
                          k, v);
      const std::string what = label("qkv_norm_rope", dtype, shape) +
                               (c.style == ops::RopeStyle::Interleaved ? " interleaved" : " split-half");
      expect_matches(q, expected.q, what + " q");
      expect_matches(k, expected.k, what + " k");
      expect_identical(v, expected.v, what + " v");
    }
  }
}

// ---- softmax, rope, concat -----------------------------------------------------------------

TEST(CudaSoftmax, AnyDim) {
  const std::pair<Shape, int64_t> cases[] = {{{5, 77}, 1},   {{6, 5000}, 1}, {{3, 1000, 4}, 1},
                                             {{2, 3, 4}, 0}, {{1}, 0},       {{4, 1, 9}, 2}};
  uint64_t seed = 800;
  for (DType dtype : kFloatTypes) {
    for (const auto& [shape, dim] : cases) {
      const Tensor x = random_in(dtype, shape, seed++, -8.0f, 8.0f);
      expect_kernels_agree(label("softmax", dtype, shape) + " dim " + std::to_string(dim),
                           cpu::softmax, cuda::softmax, shape, dtype, x, dim);
    }
  }
}

TEST(CudaRope, BothStyles) {
  uint64_t seed = 900;
  for (DType dtype : kFloatTypes) {
    // Full tables, and partial ones (Stable Audio rotates half of each head).
    for (const auto& [shape, rotary] : {std::pair{Shape{2, 37, 3, 64}, int64_t{64}}, std::pair{Shape{1, 5, 2, 10}, int64_t{10}},
                                        std::pair{Shape{2, 1025, 24, 64}, int64_t{32}},
                                        std::pair{Shape{1, 7, 3, 10}, int64_t{4}}}) {
      const Tensor x = random_in(dtype, shape, seed++);
      const Tensor cos = random_in(DType::Float32, {shape[1], rotary}, seed++);
      const Tensor sin = random_in(DType::Float32, {shape[1], rotary}, seed++);
      for (ops::RopeStyle style : {ops::RopeStyle::Interleaved, ops::RopeStyle::SplitHalf}) {
        expect_kernels_agree(label(rotary < shape[3] ? "rope partial" : "rope", dtype, shape), cpu::rope, cuda::rope, shape,
                             dtype, x, cos, sin, style);
      }
    }
  }
}

TEST(CudaConcat, AlongEveryDim) {
  uint64_t seed = 1000;
  for (DType dtype : {DType::Float32, DType::BFloat16}) {
    for (int64_t dim = 0; dim < 3; ++dim) {
      std::vector<Tensor> parts;
      Shape out{2, 3, 4};
      out[dim] = 0;
      for (int64_t size : {3, 5, 1}) {
        Shape shape{2, 3, 4};
        shape[dim] = size;
        out[dim] += size;
        parts.push_back(random_in(dtype, shape, seed++));
      }
      std::vector<Tensor> gpu_parts;
      for (const Tensor& p : parts) gpu_parts.push_back(on_gpu(p));
      Tensor cpu_out = Tensor::empty(out, dtype), gpu_out = poisoned(out, dtype);
      cpu::concat(parts, dim, cpu_out);
      cuda::concat(gpu_parts, dim, gpu_out);
      const Comparison c = compare(gpu_out, cpu_out, label("concat", dtype, out));
      EXPECT_EQ(c.max_abs, 0.0);
    }
  }
}

// ---- embeddings ----------------------------------------------------------------------------

TEST(CudaEmbeddings, Conv3dPatch) {
  struct Case {
    Shape x, weight;
  };
  const Case cases[] = {{{2, 3, 4, 6, 8}, {5, 3, 2, 2, 2}}, {{1, 16, 1, 8, 8}, {32, 16, 1, 2, 2}}};
  uint64_t seed = 1100;
  for (DType dtype : kFloatTypes) {
    for (const auto& c : cases) {
      const Tensor x = random_in(dtype, c.x, seed++), w = random_in(dtype, c.weight, seed++);
      const Tensor b = random_in(dtype, {c.weight[0]}, seed++);
      const Shape out{c.x[0], c.weight[0], c.x[2] / c.weight[2], c.x[3] / c.weight[3],
                      c.x[4] / c.weight[4]};
      expect_kernels_agree(label("conv3d_patch", dtype, c.x), cpu::conv3d_patch, cuda::conv3d_patch,
                           out, dtype, x, w, b);
      expect_kernels_agree(label("conv3d_patch no bias", dtype, c.x), cpu::conv3d_patch,
                           cuda::conv3d_patch, out, dtype, x, w, Tensor{});
    }
  }
}

TEST(CudaEmbeddings, TimestepEmbedding) {
  const Tensor t = Tensor::from_vector<float>({0.0f, 1.0f, 250.5f, 999.0f, 17.25f}, {5});
  const Tensor t_int = Tensor::from_vector<int64_t>({0, 3, 999}, {3});
  for (int64_t dim : {256, 33, 1}) {
    for (bool flip : {false, true}) {
      for (float shift : {0.0f, 1.0f}) {
        const std::string what = "timestep_embedding dim " + std::to_string(dim);
        expect_kernels_agree(what, cpu::timestep_embedding, cuda::timestep_embedding, {5, dim},
                             DType::Float32, t, flip, shift, 1.0f, 10000.0f);
        expect_kernels_agree(what + " int64 t", cpu::timestep_embedding, cuda::timestep_embedding,
                             {3, dim}, DType::Float32, t_int, flip, shift, 1000.0f, 10000.0f);
      }
    }
  }
}

// ---- attention -----------------------------------------------------------------------------

struct AttentionShape {
  int64_t batch, heads, q_len, kv_len, head_dim, value_dim;
  int64_t kv_heads = 0;  // grouped K/V heads; 0 = as many as query heads
  int64_t kv() const { return kv_heads > 0 ? kv_heads : heads; }
};

std::string describe(const AttentionShape& s) {
  return detail::concat("B", s.batch, " H", s.heads, s.kv_heads > 0 ? " Hkv" + std::to_string(s.kv_heads) : "",
                        " Sq", s.q_len, " Sk", s.kv_len, " D", s.head_dim, " Dv", s.value_dim);
}

// Queries in [-4, 4] make the softmax peaked, so a wrong key or a wrong scale shows. The
// scale is 1/sqrt(D) times `scale_factor`.
void check_attention(cuda::AttentionBackend backend, DType dtype, const AttentionShape& s,
                     uint64_t seed, const Tensor& mask = {}, float scale_factor = 1.0f) {
  const Tensor q = random_in(dtype, {s.batch, s.q_len, s.heads, s.head_dim}, seed, -4.0f, 4.0f);
  const Tensor k = random_in(dtype, {s.batch, s.kv_len, s.kv(), s.head_dim}, seed + 1);
  const Tensor v = random_in(dtype, {s.batch, s.kv_len, s.kv(), s.value_dim}, seed + 2);
  const float scale = scale_factor / std::sqrt(static_cast<float>(s.head_dim));
  const Shape out_shape{s.batch, s.q_len, s.heads, s.value_dim};
  Tensor cpu_out = Tensor::empty(out_shape, dtype), gpu_out = poisoned(out_shape, dtype);
  cpu::attention(q, k, v, mask, scale, cpu_out);
  cuda::attention_with(backend, on_gpu(q), on_gpu(k), on_gpu(v), on_gpu(mask), scale, gpu_out);
  const std::string what = std::string(cuda::attention_backend_name(backend)) + " " +
                           dtype_name(dtype) + " " + describe(s) +
                           (mask.defined() ? " masked" : "") +
                           (scale_factor != 1.0f ? " scale x" + std::to_string(scale_factor) : "");
  const Comparison c = expect_matches(gpu_out, cpu_out, what);
  std::printf("attention %-34s max_abs %.2e rel_l2 %.2e (max |ref| %.2f)\n", what.c_str(),
              c.max_abs, c.rel_l2, c.max_ref);
}

std::vector<AttentionShape> attention_shapes() {
  std::vector<AttentionShape> shapes;
  const std::pair<int64_t, int64_t> lengths[] = {{1, 1}, {37, 37}, {333, 333}, {37, 100}};
  for (int64_t d : {64, 72, 128}) {
    for (const auto& [q_len, kv_len] : lengths) shapes.push_back({2, 3, q_len, kv_len, d, d});
  }
  return shapes;
}

TEST(CudaAttention, CudnnMatchesCpu) {
  const std::string why =
      cuda::cudnn_sdpa_refusal(Tensor::empty({1, 1, 1, 64}, DType::BFloat16, kGpu),
                               Tensor::empty({1, 1, 1, 64}, DType::BFloat16, kGpu),
                               Tensor::empty({1, 1, 1, 64}, DType::BFloat16, kGpu), {});
  if (why.find("library loaded is") != std::string::npos) GTEST_SKIP() << why;
  std::printf("cuDNN runtime %zu\n", cudnnGetVersion());
  uint64_t seed = 2000;
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    for (const auto& s : attention_shapes())
      check_attention(cuda::AttentionBackend::Cudnn, dtype, s, seed += 3);
  }
}

TEST(CudaAttention, FlashMatchesCpu) {
  uint64_t seed = 3000;
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    for (const auto& s : attention_shapes())
      check_attention(cuda::AttentionBackend::Flash, dtype, s, seed += 3);
    for (const AttentionShape& s :
         {AttentionShape{1, 2, 70, 65, 8, 8}, AttentionShape{1, 2, 129, 200, 256, 256},
          AttentionShape{2, 2, 50, 80, 64, 128}, AttentionShape{1, 1, 64, 64, 192, 40}}) {
      check_attention(cuda::AttentionBackend::Flash, dtype, s, seed += 3);
    }
  }
}

// The shapes the Hopper kernel takes (D = Dv = 64 or 128; 128-row query tiles, 128-key
// tiles, two ring slots): lengths off the tiles by one and by more, exact multiples, one key,
// cross-attention to 512 keys, many key tiles (so every ring slot is reused), batch > 1.
TEST(CudaAttention, FlashHeadDims64And128MatchCpu) {
  uint64_t seed = 3500;
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    for (int64_t d : {64, 128}) {
      for (const AttentionShape& s :
           {AttentionShape{2, 3, 1000, 1000, d, d}, AttentionShape{1, 4, 777, 512, d, d},
            AttentionShape{2, 2, 300, 512, d, d}, AttentionShape{1, 2, 256, 384, d, d},
            AttentionShape{1, 3, 129, 1, d, d}, AttentionShape{1, 2, 130, 129, d, d},
            AttentionShape{1, 1, 5, 1700, d, d}}) {
        check_attention(cuda::AttentionBackend::Flash, dtype, s, seed += 3);
      }
    }
  }
}

// A scale <= 0 is outside the Hopper kernel; the generic kernel serves it at every head dim.
TEST(CudaAttention, FlashNonPositiveScaleMatchesCpu) {
  uint64_t seed = 3700;
  for (int64_t d : {64, 128}) {
    check_attention(cuda::AttentionBackend::Flash, DType::BFloat16, {2, 2, 200, 333, d, d},
                    seed += 3, {}, -1.0f);
  }
}

// Long sequences against the reference kernel on the GPU (the CPU would take minutes).
TEST(CudaAttention, FlashMatchesReferenceOnLongSequences) {
  const AttentionShape shapes[] = {{1, 4, 4100, 4100, 128, 128}, {2, 2, 3000, 2500, 64, 64}};
  uint64_t seed = 3900;
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    for (const AttentionShape& s : shapes) {
      seed += 3;
      const Tensor q =
          random_in(dtype, {s.batch, s.q_len, s.heads, s.head_dim}, seed, -4.0f, 4.0f).to(kGpu);
      const Tensor k =
          random_in(dtype, {s.batch, s.kv_len, s.heads, s.head_dim}, seed + 1).to(kGpu);
      const Tensor v =
          random_in(dtype, {s.batch, s.kv_len, s.heads, s.value_dim}, seed + 2).to(kGpu);
      const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
      const Shape out_shape{s.batch, s.q_len, s.heads, s.value_dim};
      Tensor flash = poisoned(out_shape, dtype), reference = poisoned(out_shape, dtype);
      cuda::attention_with(cuda::AttentionBackend::Flash, q, k, v, {}, scale, flash);
      cuda::attention_with(cuda::AttentionBackend::Reference, q, k, v, {}, scale, reference);
      const std::string what = std::string("flash vs reference ") + dtype_name(dtype) + " " +
                               describe(s);
      const Comparison c = expect_matches(flash, reference, what);
      std::printf("attention %-34s max_abs %.2e rel_l2 %.2e (max |ref| %.2f)\n", what.c_str(),
                  c.max_abs, c.rel_l2, c.max_ref);
    }
  }
}

TEST(CudaAttention, ReferenceMatchesCpu) {
  uint64_t seed = 4000;
  for (DType dtype : kFloatTypes) {
    for (const auto& s : attention_shapes())
      check_attention(cuda::AttentionBackend::Reference, dtype, s, seed += 3);
    check_attention(cuda::AttentionBackend::Reference, dtype, {1, 2, 9, 300, 20, 36}, seed += 3);
  }
}

// Grouped K/V heads (query head h reads K/V head h / (H / Hkv)): Stable Audio's
// cross-attention (24 heads over 12, 1025 queries, 130 keys), factors 4 and 8, tile edges.
const AttentionShape kGroupedShapes[] = {{2, 24, 1025, 130, 64, 64, 12}, {1, 8, 37, 100, 64, 64, 2},
                                         {2, 4, 70, 65, 8, 8, 1},        {1, 8, 129, 200, 128, 128, 4}};

TEST(CudaAttention, GroupedKeyValueHeadsFlashAndReference) {
  uint64_t seed = 4500;
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    for (const auto& s : kGroupedShapes) {
      check_attention(cuda::AttentionBackend::Flash, dtype, s, seed += 3);
      check_attention(cuda::AttentionBackend::Reference, dtype, s, seed += 3);
    }
  }
  check_attention(cuda::AttentionBackend::Reference, DType::Float32, kGroupedShapes[1], seed += 3);
  Tensor keys = Tensor::empty({2, 1, 1, 130}, DType::Bool);  // a key mask with grouped heads
  for (int64_t j = 0; j < 260; ++j) keys.data<bool>()[j] = j % 5 != 2;
  check_attention(cuda::AttentionBackend::Reference, DType::BFloat16, kGroupedShapes[0], seed += 3, keys);
}

// cuDNN either runs grouped heads (and then matches the CPU) or refuses them, and then the
// selection falls to the flash kernel, never to a wrong answer.
TEST(CudaAttention, GroupedKeyValueHeadsCudnnOrFlash) {
  uint64_t seed = 4600;
  for (const auto& s : kGroupedShapes) {
    const Tensor q = Tensor::empty({s.batch, s.q_len, s.heads, s.head_dim}, DType::BFloat16, kGpu);
    const Tensor k = Tensor::empty({s.batch, s.kv_len, s.kv(), s.head_dim}, DType::BFloat16, kGpu);
    const Tensor v = Tensor::empty({s.batch, s.kv_len, s.kv(), s.value_dim}, DType::BFloat16, kGpu);
    const std::string why = cuda::cudnn_sdpa_refusal(q, k, v, {});
    const cuda::AttentionBackend chosen = cuda::select_attention_backend(q, k, v, {});
    std::printf("grouped %s: cuDNN %s, chosen %s\n", describe(s).c_str(), why.empty() ? "serves" : why.c_str(),
                cuda::attention_backend_name(chosen));
    if (why.empty()) {
      check_attention(cuda::AttentionBackend::Cudnn, DType::BFloat16, s, seed += 3);
    } else {
      EXPECT_EQ(chosen, cuda::AttentionBackend::Flash) << describe(s);
    }
  }
}

TEST(CudaAttention, ReferenceMasks) {
  const AttentionShape s{2, 3, 37, 100, 64, 64};
  Tensor keep = random_tensor({2, 1, 37, 100}, 5);  // bool mask, ~70% kept
  std::vector<uint8_t> bits;
  for (float r : keep.to_float_vector()) bits.push_back(r > -0.4f);
  for (int j = 0; j < 100; ++j) bits[5 * 100 + j] = 0;  // one query row sees no key at all
  Tensor bool_mask = Tensor::empty({2, 1, 37, 100}, DType::Bool);
  std::copy(bits.begin(), bits.end(), bool_mask.data<bool>());
  for (DType dtype : kFloatTypes) {
    check_attention(cuda::AttentionBackend::Reference, dtype, s, 50, bool_mask);
    check_attention(cuda::AttentionBackend::Reference, dtype, s, 60,
                    random_tensor({37, 100}, 6, -3.0f, 0.0f));
  }
}

void expect_error(const std::function<void()>& call, const std::string& fragment) {
  try {
    call();
    ADD_FAILURE() << "expected fastdit::Error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(CudaAttention, BackendChoiceAndRefusals) {
  const Tensor q32 = Tensor::zeros({1, 4, 2, 64}, DType::Float32, kGpu);
  const Tensor q16 = Tensor::zeros({1, 4, 2, 64}, DType::BFloat16, kGpu);
  const Tensor mask = Tensor::zeros({4, 4}, DType::Float32, kGpu);
  const Tensor odd = Tensor::zeros({1, 4, 2, 36}, DType::BFloat16, kGpu);
  Tensor out32 = Tensor::empty({1, 4, 2, 64}, DType::Float32, kGpu);
  Tensor out16 = Tensor::empty({1, 4, 2, 64}, DType::BFloat16, kGpu);
  using cuda::AttentionBackend;
  expect_error(
      [&] { cuda::attention_with(AttentionBackend::Flash, q32, q32, q32, {}, 1.0f, out32); },
      "bfloat16 or float16");
  expect_error(
      [&] { cuda::attention_with(AttentionBackend::Flash, q16, q16, q16, mask, 1.0f, out16); },
      "no mask");
  expect_error(
      [&] { cuda::attention_with(AttentionBackend::Cudnn, q16, q16, q16, mask, 1.0f, out16); },
      "no mask");
  expect_error(
      [&] { cuda::attention_with(AttentionBackend::Flash, odd, odd, odd, {}, 1.0f, out16); },
      "multiples of 8");

  ::unsetenv("FASTDIT_ATTENTION_BACKEND");
  EXPECT_EQ(cuda::select_attention_backend(q32, q32, q32, {}), AttentionBackend::Reference);
  EXPECT_EQ(cuda::select_attention_backend(q16, q16, q16, mask), AttentionBackend::Reference);
  EXPECT_EQ(cuda::select_attention_backend(odd, odd, odd, {}), AttentionBackend::Reference);
  EXPECT_NE(cuda::select_attention_backend(q16, q16, q16, {}), AttentionBackend::Reference);
  // Long sequences at head dim 128: our Hopper kernel, where it is measured faster than cuDNN.
  const Tensor wan = Tensor::zeros({1, 8192, 2, 128}, DType::BFloat16, kGpu);
  const Tensor flux = Tensor::zeros({1, 4608, 2, 128}, DType::BFloat16, kGpu);
  if (cuda::flash_attention_sm90_serves(wan, wan, wan, 1.0f)) {
    EXPECT_EQ(cuda::select_attention_backend(wan, wan, wan, {}), AttentionBackend::Flash);
    EXPECT_EQ(cuda::select_attention_backend(flux, flux, flux, {}),
              cuda::cudnn_sdpa_refusal(flux, flux, flux, {}).empty() ? AttentionBackend::Cudnn
                                                                      : AttentionBackend::Flash);
  } else {
    EXPECT_NE(cuda::select_attention_backend(wan, wan, wan, {}), AttentionBackend::Reference);
  }
  ::setenv("FASTDIT_ATTENTION_BACKEND", "flash", 1);
  EXPECT_EQ(cuda::select_attention_backend(q16, q16, q16, {}), AttentionBackend::Flash);
  expect_error([&] { cuda::attention(q32, q32, q32, {}, 1.0f, out32); },
               "FASTDIT_ATTENTION_BACKEND=flash");
  ::setenv("FASTDIT_ATTENTION_BACKEND", "reference", 1);
  EXPECT_EQ(cuda::select_attention_backend(q16, q16, q16, {}), AttentionBackend::Reference);
  ::setenv("FASTDIT_ATTENTION_BACKEND", "fastest", 1);
  expect_error([&] { cuda::select_attention_backend(q16, q16, q16, {}); }, "not one of");
  ::unsetenv("FASTDIT_ATTENTION_BACKEND");
}

}  // namespace
}  // namespace fastdit
