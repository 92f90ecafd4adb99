// Argument checks happen here, once, for every backend: a kernel receives contiguous
// inputs on one device and an allocated output of the final shape and dtype.
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/row_layout.h"
#include "ops/attention_8bit.h"
#include "ops/fp8.h"

#if defined(FASTDIT_WITH_CUDA) && __has_include("backends/cuda/cuda_ops.h")
#include "backends/cuda/cuda_ops.h"
// cuda_ops.h declares one cuda:: kernel per op, with the signature of its cpu:: twin;
// an op whose CUDA kernel is not written yet passes nullptr instead of CUDA_KERNEL(op).
#define CUDA_KERNEL(name) (&::fastdit::cuda::name)
#define FASTDIT_CUDA_KERNELS 1
#else
#define CUDA_KERNEL(name) nullptr
#endif

namespace fastdit::ops {
namespace {

FlopCount* g_flops = nullptr;                  // non-null while counting
KernelObserver* g_kernel_observer = nullptr;  // non-null while a benchmark splits time

template <class Launch>
void observed(const char* op, Device device, Launch&& launch) {
  if (!g_kernel_observer) [[likely]]
    return launch();
  g_kernel_observer->before_kernel(op, device);
  launch();
  g_kernel_observer->after_kernel(op, device);
}

template <class... Params, class... Args>
void run_kernel(const char* op, Device device, void (*cpu_kernel)(Params...),
                std::type_identity_t<void (*)(Params...)> cuda_kernel, Args&&... args) {
  FASTDIT_CHECK(device.is_cpu() || cuda_kernel != nullptr, op, ": no CUDA kernel yet");
  observed(op, device, [&] { (device.is_cpu() ? cpu_kernel : cuda_kernel)(std::forward<Args>(args)...); });
}

// A tensor argument and the name the op's error messages give it.
struct Arg {
  const char* name;
  const Tensor& tensor;
};

bool is_compute_float(DType dtype) {
  return dtype == DType::Float32 || dtype == DType::BFloat16 || dtype == DType::Float16;
}

void require(const char* op, const Arg& arg) {
  FASTDIT_CHECK(arg.tensor.defined(), op, ": ", arg.name, " is undefined");
}

// Every defined tensor of `args` is float32 / bfloat16 / float16 and lives on the
// device of the first (which must be defined).
void check_float_args(const char* op, std::initializer_list<Arg> args) {
  const Arg& first = *args.begin();
  require(op, first);
  for (const Arg& arg : args) {
    if (!arg.tensor.defined()) continue;
    FASTDIT_CHECK(is_compute_float(arg.tensor.dtype()), op, ": ", arg.name, " has dtype ",
                  dtype_name(arg.tensor.dtype()), "; expected float32, bfloat16 or float16");
    FASTDIT_CHECK(arg.tensor.device() == first.tensor.device(), op, ": ", arg.name, " is on ",
                  arg.tensor.device().str(), " but ", first.name, " is on ",
                  first.tensor.device().str());
  }
}

void check_rank(const char* op, const Arg& arg, int64_t rank) {
  FASTDIT_CHECK(arg.tensor.dim() == rank, op, ": ", arg.name, " ",
                shape_str(arg.tensor.shape()), " must have rank ", rank);
}

// A defined optional [n] parameter (a norm weight, a bias) has exactly n entries.
void check_vector(const char* op, const Arg& arg, int64_t n) {
  if (!arg.tensor.defined()) return;
  FASTDIT_CHECK(arg.tensor.dim() == 1 && arg.tensor.size(0) == n, op, ": ", arg.name, " ",
                shape_str(arg.tensor.shape()), " must be [", n, "]");
}

Tensor contiguous(const Tensor& t) { return t.defined() ? t.contiguous() : t; }

int64_t normalize_dim(const char* op, int64_t dim, const Tensor& t) {
  const int64_t d = dim < 0 ? dim + t.dim() : dim;
  FASTDIT_CHECK(d >= 0 && d < t.dim(), op, ": dim ", dim, " out of range for ",
                shape_str(t.shape()));
  return d;
}

// NumPy broadcasting of every arg's shape; the error names all of them.
Shape broadcast_shape(const char* op, std::initializer_list<Arg> args) {
  size_t rank = 0;
  for (const Arg& arg : args) rank = std::max(rank, arg.tensor.shape().size());
  Shape shape(rank, 1);
  for (const Arg& arg : args) {
    const Shape& own = arg.tensor.shape();
    const size_t lead = rank - own.size();
    for (size_t d = 0; d < own.size(); ++d) {
      int64_t& target = shape[lead + d];
      if (own[d] == target || own[d] == 1) continue;
      if (target == 1) {
        target = own[d];
        continue;
      }
      std::string shapes;
      for (const Arg& a : args) {
        shapes += (shapes.empty() ? "" : ", ") + std::string(a.name) + " " +
                  shape_str(a.tensor.shape());
      }
      FASTDIT_FAIL(op, ": shapes do not broadcast: ", shapes);
    }
  }
  return shape;
}

// float32 when the inputs' dtypes differ, else their common dtype.
DType result_dtype(std::initializer_list<Arg> args) {
  const DType first = args.begin()->tensor.dtype();
  for (const Arg& arg : args) {
    if (arg.tensor.dtype() != first) return DType::Float32;
  }
  return first;
}

template <class... Params, class... Extra>
Tensor unary_op(const char* op, const Tensor& x, void (*cpu_kernel)(Params...),
                std::type_identity_t<void (*)(Params...)> cuda_kernel, Extra... extra) {
  check_float_args(op, {{"x", x}});
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  run_kernel(op, x.device(), cpu_kernel, cuda_kernel, contiguous(x), extra..., out);
  return out;
}

// add / sub / mul / modulate / gated_add: broadcast shape, promoted dtype, one kernel.
// Checks a broadcasting op's tensors and allocates its output.
Tensor broadcast_output(const char* op, std::initializer_list<Arg> args, std::optional<DType> out_dtype) {
  check_float_args(op, args);
  for (const Arg& arg : args) require(op, arg);
  FASTDIT_CHECK(!out_dtype || is_compute_float(*out_dtype), op, ": out_dtype must be float32, bfloat16 or float16");
  return Tensor::empty(broadcast_shape(op, args), out_dtype.value_or(result_dtype(args)),
                       args.begin()->tensor.device());
}

template <class... Params, class... Inputs>
Tensor broadcasting_op(const char* op, std::initializer_list<Arg> args,
                       std::optional<DType> out_dtype, void (*cpu_kernel)(Params...),
                       std::type_identity_t<void (*)(Params...)> cuda_kernel,
                       const Inputs&... inputs) {
  Tensor out = broadcast_output(op, args, out_dtype);
  run_kernel(op, out.device(), cpu_kernel, cuda_kernel, contiguous(inputs)..., out);
  return out;
}

}  // namespace

// ---- GEMM ----------------------------------------------------------------------------

namespace {
// Validates a linear's arguments, counts its FLOPs and allocates its output.
Tensor linear_output(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_float_args(op, {{"x", x}, {"weight", weight}, {"bias", bias}});
  require(op, {"weight", weight});
  check_rank(op, {"weight", weight}, 2);
  FASTDIT_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), op, ": x ", shape_str(x.shape()),
                " and weight ", shape_str(weight.shape()), " disagree on K");
  check_vector(op, {"bias", bias}, weight.size(0));
  Shape shape = x.shape();
  shape.back() = weight.size(0);
  if (g_flops) g_flops->linear += 2.0 * static_cast<double>(x.numel() / x.size(-1)) *
                                   static_cast<double>(weight.size(0)) * static_cast<double>(weight.size(1));
  return Tensor::empty(std::move(shape), x.dtype(), x.device());
}
}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Tensor out = linear_output("linear", x, weight, bias);
  run_kernel("linear", x.device(), cpu::linear, CUDA_KERNEL(linear), contiguous(x),
             contiguous(weight), contiguous(bias), out);
  return out;
}

Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias, GeluApprox approx) {
#ifdef FASTDIT_CUDA_KERNELS
  if (x.device().is_cuda() && approx == GeluApprox::Tanh) {
    Tensor out = linear_output("linear_gelu", x, weight, bias);
    observed("linear_gelu", x.device(),
             [&] { cuda::linear_gelu_tanh(contiguous(x), contiguous(weight), contiguous(bias), out); });
    return out;
  }
#endif
  return gelu(linear(x, weight, bias), approx);
}

// ---- FP8 (e4m3) GEMM -----------------------------------------------------------------

namespace {
// The CPU side of the FP8 ops: the plain rule of ops/fp8.h over float32 views.
Fp8Rows quantize_fp8_rows_cpu(const Tensor& x) {
  const Shape leading(x.shape().begin(), x.shape().end() - 1);
  const int64_t cols = x.size(-1), rows = shape_numel(leading);
  const std::vector<float> values = x.to_float_vector();
  const fp8::QuantizedRows q = fp8::quantize_rows(values, rows, cols);
  Fp8Rows out{Tensor::empty(x.shape(), DType::Float8E4M3), Tensor::empty(leading, DType::Float32)};
  std::copy(q.codes.begin(), q.codes.end(), out.values.data<uint8_t>());
  std::copy(q.scales.begin(), q.scales.end(), out.scales.data<float>());
  return out;
}

// float32 [..., N]: the exact product before any rounding.
Tensor linear_fp8_cpu(const Tensor& x, const Tensor& weight, const Tensor& weight_scales, const Tensor& bias,
                      const Shape& shape) {
  const int64_t n = weight.size(0), k = weight.size(1), m = x.numel() / k;
  fp8::QuantizedRows w{n, k, std::vector<uint8_t>(weight.data<uint8_t>(), weight.data<uint8_t>() + n * k),
                       weight_scales.to_float_vector()};
  const std::vector<float> y =
      fp8::linear(x.to_float_vector(), m, w, bias.defined() ? bias.to_float_vector() : std::vector<float>{});
  Tensor values = Tensor::empty(shape, DType::Float32);
  std::copy(y.begin(), y.end(), values.data<float>());
  return values;
}
}  // namespace

Fp8Rows quantize_fp8_rows(const Tensor& x) {
  const char* op = "quantize_fp8_rows";
  check_float_args(op, {{"x", x}});
  FASTDIT_CHECK(x.dim() >= 1, op, ": x must have rank >= 1, got ", shape_str(x.shape()));
  if (x.device().is_cpu()) return quantize_fp8_rows_cpu(contiguous(x));
#ifdef FASTDIT_CUDA_KERNELS
  Fp8Rows out{Tensor::empty(x.shape(), DType::Float8E4M3, x.device()),
              Tensor::empty(Shape(x.shape().begin(), x.shape().end() - 1), DType::Float32, x.device())};
  observed(op, x.device(), [&] { cuda::quantize_fp8_rows(contiguous(x), out.values, out.scales); });
  return out;
#else
  FASTDIT_FAIL(op, ": no CUDA kernel in this build");
#endif
}

Tensor linear_fp8(const Tensor& x, const Tensor& weight, const Tensor& weight_scales, const Tensor& bias,
                  std::optional<GeluApprox> gelu) {
  const char* op = "linear_fp8";
  require(op, {"x", x});
  require(op, {"weight", weight});
  require(op, {"weight_scales", weight_scales});
  FASTDIT_CHECK(x.dtype() == DType::BFloat16, op, ": x has dtype ", dtype_name(x.dtype()), "; expected bfloat16");
  FASTDIT_CHECK(weight.dtype() == DType::Float8E4M3, op, ": weight has dtype ", dtype_name(weight.dtype()),
                "; expected float8_e4m3fn (ops::quantize_fp8_rows of the weight)");
  FASTDIT_CHECK(weight_scales.dtype() == DType::Float32, op, ": weight_scales has dtype ",
                dtype_name(weight_scales.dtype()), "; expected float32");
  FASTDIT_CHECK(!bias.defined() || bias.dtype() == DType::BFloat16, op, ": bias has dtype ",
                dtype_name(bias.dtype()), "; expected bfloat16");
  for (const Arg& arg : {Arg{"weight", weight}, Arg{"weight_scales", weight_scales}, Arg{"bias", bias}}) {
    FASTDIT_CHECK(!arg.tensor.defined() || arg.tensor.device() == x.device(), op, ": ", arg.name, " is on ",
                  arg.tensor.device().str(), " but x is on ", x.device().str());
  }
  check_rank(op, {"weight", weight}, 2);
  const int64_t n = weight.size(0), k = weight.size(1);
  FASTDIT_CHECK(x.dim() >= 1 && x.size(-1) == k, op, ": x ", shape_str(x.shape()), " and weight ",
                shape_str(weight.shape()), " disagree on K");
  FASTDIT_CHECK(k > 0 && k % 16 == 0 && n > 0 && n % 16 == 0, op, ": weight ", shape_str(weight.shape()),
                ": FP8 GEMMs take N and K multiples of 16");
  check_vector(op, {"weight_scales", weight_scales}, n);
  check_vector(op, {"bias", bias}, n);
  Shape shape = x.shape();
  shape.back() = n;
  if (g_flops) g_flops->linear += 2.0 * static_cast<double>(x.numel() / k) * static_cast<double>(n * k);
  if (x.device().is_cpu()) {
    Tensor values;
    observed(op, x.device(), [&] { values = linear_fp8_cpu(contiguous(x), weight, weight_scales, bias, shape); });
    return cast(gelu ? ops::gelu(values, *gelu) : values, DType::BFloat16);  // rounded once, as the GPU's epilogue
  }
#ifdef FASTDIT_CUDA_KERNELS
  Tensor out = Tensor::empty(std::move(shape), DType::BFloat16, x.device());
  if (out.numel() == 0) return out;
  const bool fused_gelu = gelu == GeluApprox::Tanh;
  const Fp8Rows xq = quantize_fp8_rows(x);  // its own op, so a per-op split shows it apart
  observed(op, x.device(), [&] {
    cuda::linear_fp8(xq, contiguous(weight), contiguous(weight_scales), contiguous(bias), fused_gelu, out);
  });
  return gelu && !fused_gelu ? ops::gelu(out, *gelu) : out;
#else
  FASTDIT_FAIL(op, ": no CUDA kernel in this build");
#endif
}

// ---- normalisation -------------------------------------------------------------------

namespace {
void check_norm_args(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_float_args(op, {{"x", x}, {"weight", weight}, {"bias", bias}});
  FASTDIT_CHECK(x.dim() >= 1, op, ": x must have rank >= 1, got ", shape_str(x.shape()));
  check_vector(op, {"weight", weight}, x.size(-1));
  check_vector(op, {"bias", bias}, x.size(-1));
}
}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  check_norm_args("layer_norm", x, weight, bias);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  run_kernel("layer_norm", x.device(), cpu::layer_norm, CUDA_KERNEL(layer_norm), contiguous(x),
             contiguous(weight), contiguous(bias), eps, out);
  return out;
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps, Rounding rounding) {
  check_norm_args("rms_norm", x, weight, Tensor{});
  const bool each_step = rounding == Rounding::EachStep && weight.defined();
  FASTDIT_CHECK(!each_step || weight.dtype() == x.dtype(), "rms_norm: Rounding::EachStep needs the weight in x's dtype (",
                dtype_name(x.dtype()), "), got ", dtype_name(weight.dtype()));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  // Evenly spaced rows (a column range of a fused projection's output) are read in place.
  run_kernel("rms_norm", x.device(), cpu::rms_norm, CUDA_KERNEL(rms_norm), even_row_stride(x) ? x : x.contiguous(),
             contiguous(weight), eps, each_step, out);
  return out;
}

namespace {
#ifdef FASTDIT_CUDA_KERNELS
// Whether t (undefined, or of x's rank and shape but for dim -2, which may be 1) is a row
// operand of the fused row kernels against x: per item / frame rows, or per token.
bool row_operand_fits(const Tensor& t, const Tensor& x) {
  if (!t.defined()) return true;
  if (t.dim() != x.dim() || x.dim() < 2) return false;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (t.size(d) != x.size(d) && !(d == x.dim() - 2 && t.size(d) == 1)) return false;
  }
  return true;
}
#endif

Tensor norm_modulate(const char* op, const Tensor& x, const Tensor& weight, const Tensor& shift, const Tensor& scale,
                     float eps, DType out_dtype, bool rms, Rounding rounding = Rounding::Once) {
  check_norm_args(op, x, weight, {});
  check_float_args(op, {{"x", x}, {"shift", shift}, {"scale", scale}});
  require(op, {"shift", shift});
  require(op, {"scale", scale});
  FASTDIT_CHECK(is_compute_float(out_dtype), op, ": out_dtype must be float32, bfloat16 or float16");
  const Shape shape = broadcast_shape(op, {{"x", x}, {"shift", shift}, {"scale", scale}});
  FASTDIT_CHECK(shape == x.shape(), op, ": shift ", shape_str(shift.shape()), " and scale ",
                shape_str(scale.shape()), " must broadcast to x ", shape_str(x.shape()));
  const bool each_step = rounding == Rounding::EachStep;
  FASTDIT_CHECK(!each_step || out_dtype == x.dtype(), op, ": Rounding::EachStep writes x's dtype (",
                dtype_name(x.dtype()), "), not ", dtype_name(out_dtype));
#ifdef FASTDIT_CUDA_KERNELS
  // The fused kernel takes x [..., L, D] with shift/scale [..., 1, D] or [..., L, D].
  if (x.device().is_cuda() && x.dim() >= 2 && row_operand_fits(shift, x) && row_operand_fits(scale, x)) {
    Tensor out = Tensor::empty(x.shape(), out_dtype, x.device());
    observed(op, x.device(), [&] {
      cuda::norm_modulate(contiguous(x), contiguous(weight), contiguous(shift), contiguous(scale), eps, rms, each_step,
                          out);
    });
    return out;
  }
#endif
  if (each_step)  // the norm as its op gives it (in x's dtype), then the modulation's steps
    return modulate(rms ? rms_norm(x, weight, eps) : layer_norm(x, {}, {}, eps), shift, scale, out_dtype, rounding);
  const Tensor wide = cast(x, DType::Float32);
  return modulate(rms ? rms_norm(wide, weight, eps) : layer_norm(wide, {}, {}, eps), shift, scale, out_dtype);
}
}  // namespace

Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                           DType out_dtype) {
  return norm_modulate("layer_norm_modulate", x, {}, shift, scale, eps, out_dtype, /*rms=*/false);
}

Tensor rms_norm_modulate(const Tensor& x, const Tensor& weight, const Tensor& shift, const Tensor& scale, float eps,
                         DType out_dtype, Rounding rounding) {
  return norm_modulate("rms_norm_modulate", x, weight, shift, scale, eps, out_dtype, /*rms=*/true, rounding);
}

// ---- activations ---------------------------------------------------------------------

Tensor gelu(const Tensor& x, GeluApprox approx) {
  return unary_op("gelu", x, cpu::gelu, CUDA_KERNEL(gelu), approx);
}

Tensor silu(const Tensor& x) { return unary_op("silu", x, cpu::silu, CUDA_KERNEL(silu)); }

Tensor sigmoid(const Tensor& x) { return unary_op("sigmoid", x, cpu::sigmoid, CUDA_KERNEL(sigmoid)); }

Tensor swiglu(const Tensor& x) {
  check_float_args("swiglu", {{"x", x}});
  FASTDIT_CHECK(x.dim() >= 1 && x.size(-1) % 2 == 0, "swiglu: x ", shape_str(x.shape()),
                " must have an even last dim (value and gate halves)");
  Shape shape = x.shape();
  shape.back() /= 2;
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  run_kernel("swiglu", x.device(), cpu::swiglu, CUDA_KERNEL(swiglu), contiguous(x), out);
  return out;
}

// ---- elementwise ---------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
  return broadcasting_op("add", {{"a", a}, {"b", b}}, std::nullopt, cpu::add, CUDA_KERNEL(add), a, b);
}

Tensor sub(const Tensor& a, const Tensor& b) {
  return broadcasting_op("sub", {{"a", a}, {"b", b}}, std::nullopt, cpu::sub, CUDA_KERNEL(sub), a, b);
}

Tensor mul(const Tensor& a, const Tensor& b) {
  return broadcasting_op("mul", {{"a", a}, {"b", b}}, std::nullopt, cpu::mul, CUDA_KERNEL(mul), a, b);
}

Tensor scale(const Tensor& x, float factor) {
  return unary_op("scale", x, cpu::scale, CUDA_KERNEL(scale), factor);
}

Tensor cos(const Tensor& x) { return unary_op("cos", x, cpu::cos, CUDA_KERNEL(cos)); }

Tensor sin(const Tensor& x) { return unary_op("sin", x, cpu::sin, CUDA_KERNEL(sin)); }
Tensor clamp(const Tensor& x, float lo, float hi) {
  FASTDIT_CHECK(lo <= hi, "clamp: lo ", lo, " is above hi ", hi);
  return unary_op("clamp", x, cpu::clamp, CUDA_KERNEL(clamp), lo, hi);
}

namespace {
// modulate and gated_add: three broadcast tensors and the rounding flag the kernels take.
using RoundedKernel = void (*)(const Tensor&, const Tensor&, const Tensor&, bool, Tensor&);
Tensor rounded_op(const char* op, std::initializer_list<Arg> args, std::optional<DType> out_dtype, Rounding rounding,
                  RoundedKernel cpu_kernel, RoundedKernel cuda_kernel) {
  Tensor out = broadcast_output(op, args, out_dtype);
  const Arg* a = args.begin();
  run_kernel(op, out.device(), cpu_kernel, cuda_kernel, contiguous(a[0].tensor), contiguous(a[1].tensor),
             contiguous(a[2].tensor), rounding == Rounding::EachStep, out);
  return out;
}
}  // namespace

Tensor modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, std::optional<DType> out_dtype,
                Rounding rounding) {
  return rounded_op("modulate", {{"x", x}, {"shift", shift}, {"scale", scale}}, out_dtype, rounding, cpu::modulate,
                    CUDA_KERNEL(modulate));
}

Tensor gated_add(const Tensor& residual, const Tensor& x, const Tensor& gate, std::optional<DType> out_dtype,
                 Rounding rounding) {
  return rounded_op("gated_add", {{"residual", residual}, {"x", x}, {"gate", gate}}, out_dtype, rounding,
                    cpu::gated_add, CUDA_KERNEL(gated_add));
}

void gated_add_(Tensor& residual, const Tensor& x, const Tensor& gate) {
  constexpr const char* op = "gated_add_";
  check_float_args(op, {{"residual", residual}, {"x", x}, {"gate", gate}});
  require(op, {"x", x});
  require(op, {"gate", gate});
  const Shape shape = broadcast_shape(op, {{"residual", residual}, {"x", x}, {"gate", gate}});
  FASTDIT_CHECK(shape == residual.shape(), op, ": x ", shape_str(x.shape()), " and gate ", shape_str(gate.shape()),
                " must broadcast to residual ", shape_str(residual.shape()));
  FASTDIT_CHECK(residual.is_contiguous(), op, ": residual ", residual.str(), " must be contiguous");
  run_kernel(op, residual.device(), cpu::gated_add, CUDA_KERNEL(gated_add), residual, contiguous(x),
             contiguous(gate), false, residual);
}

AddNorm add_layer_norm(const Tensor& residual, const Tensor& x, const Tensor& gate, const Tensor& weight,
                       const Tensor& bias, const Tensor& shift, const Tensor& scale, float eps, NormKind kind,
                       Rounding rounding) {
  constexpr const char* op = "add_layer_norm";
  const bool rms = kind == NormKind::Rms;
  FASTDIT_CHECK(!rms || !bias.defined(), op, ": the RMS norm takes no bias");
  check_float_args(op, {{"residual", residual}, {"x", x}, {"gate", gate}, {"weight", weight}, {"bias", bias},
                        {"shift", shift}, {"scale", scale}});
  require(op, {"x", x});
  FASTDIT_CHECK(residual.dim() >= 1, op, ": residual must have rank >= 1, got ", shape_str(residual.shape()));
  const bool modulated = shift.defined() || scale.defined();
  FASTDIT_CHECK(!modulated || (shift.defined() && scale.defined() && !weight.defined() && !bias.defined()), op,
                ": shift and scale come together, and not with weight or bias");
  check_vector(op, {"weight", weight}, residual.size(-1));
  check_vector(op, {"bias", bias}, residual.size(-1));
  const Shape shape = broadcast_shape(op, {{"residual", residual}, {"x", x}, {"gate", gate}, {"shift", shift},
                                           {"scale", scale}});
  FASTDIT_CHECK(shape == residual.shape(), op, ": x ", shape_str(x.shape()), ", gate ", shape_str(gate.shape()),
                ", shift ", shape_str(shift.shape()), " and scale ", shape_str(scale.shape()),
                " must broadcast to residual ", shape_str(residual.shape()));
  const DType dtype = residual.dtype();
#ifdef FASTDIT_CUDA_KERNELS
  // The fused kernel takes residual and x [..., L, D] with gate/shift/scale [..., 1, D] or
  // [..., L, D] (per item, per frame or per token).
  const auto fits = [&](const Tensor& t) { return row_operand_fits(t, residual); };
  if (residual.device().is_cuda() && residual.dim() >= 2 && x.shape() == shape && fits(gate) && fits(shift) &&
      fits(scale)) {
    AddNorm out{Tensor::empty(shape, dtype, residual.device()), Tensor::empty(shape, dtype, residual.device())};
    observed(op, residual.device(), [&] {
      cuda::add_layer_norm(contiguous(residual), contiguous(x), contiguous(gate), contiguous(weight),
                           contiguous(bias), contiguous(shift), contiguous(scale), eps, rms,
                           rounding == Rounding::EachStep, out.sum, out.normed);
    });
    return out;
  }
#endif
  Tensor sum = gate.defined() ? gated_add(residual, x, gate, dtype, rounding) : cast(add(residual, x), dtype);
  Tensor normed;
  if (modulated && rounding == Rounding::EachStep) {
    normed = modulate(rms ? rms_norm(sum, {}, eps) : layer_norm(sum, {}, {}, eps), shift, scale, dtype, rounding);
  } else {
    normed = rms ? (modulated ? rms_norm_modulate(sum, {}, shift, scale, eps, dtype) : rms_norm(sum, weight, eps))
                 : (modulated ? layer_norm_modulate(sum, shift, scale, eps, dtype) : layer_norm(sum, weight, bias, eps));
  }
  return {std::move(sum), std::move(normed)};
}

// ---- reductions ----------------------------------------------------------------------

Tensor softmax(const Tensor& x, int64_t dim) {
  check_float_args("softmax", {{"x", x}});
  const int64_t d = normalize_dim("softmax", dim, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  run_kernel("softmax", x.device(), cpu::softmax, CUDA_KERNEL(softmax), contiguous(x), d, out);
  return out;
}

// ---- attention -----------------------------------------------------------------------

namespace {
void check_attention_mask(const Tensor& mask, const Shape& scores_shape) {
  FASTDIT_CHECK(mask.dtype() == DType::Bool || is_compute_float(mask.dtype()),
                "attention: mask has dtype ", dtype_name(mask.dtype()),
                "; expected bool or float32, bfloat16, float16");
  const Shape& shape = mask.shape();
  bool broadcasts = shape.size() <= scores_shape.size();
  for (size_t d = 0; broadcasts && d < shape.size(); ++d) {
    const int64_t target = scores_shape[scores_shape.size() - shape.size() + d];
    broadcasts = shape[d] == 1 || shape[d] == target;
  }
  FASTDIT_CHECK(broadcasts, "attention: mask ", shape_str(shape),
                " does not broadcast to [B, H, Sq, Sk] = ", shape_str(scores_shape));
}
}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                 float scale, const char* op) {
  check_float_args("attention", {{"q", q}, {"k", k}, {"v", v}});
  require("attention", {"k", k});
  require("attention", {"v", v});
  for (const Arg& arg : {Arg{"q", q}, Arg{"k", k}, Arg{"v", v}}) check_rank("attention", arg, 4);
  const auto where = [&] {
    return detail::concat("q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
                          shape_str(v.shape()));
  };
  FASTDIT_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(),
                "attention: q, k and v must share a dtype, got ", dtype_name(q.dtype()), ", ",
                dtype_name(k.dtype()), ", ", dtype_name(v.dtype()));
  FASTDIT_CHECK(k.size(0) == q.size(0) && v.size(0) == q.size(0), "attention: batch sizes differ: ",
                where());
  FASTDIT_CHECK(k.size(2) == v.size(2) && k.size(2) > 0 && q.size(2) % k.size(2) == 0,
                "attention: k and v need one head count that divides q's: ", where());
  FASTDIT_CHECK(k.size(3) == q.size(3), "attention: q and k head dims differ: ", where());
  FASTDIT_CHECK(v.size(1) == k.size(1), "attention: k and v sequence lengths differ: ", where());
  FASTDIT_CHECK(q.size(3) > 0, "attention: head dim must be positive: ", where());
  if (mask.defined()) {
    FASTDIT_CHECK(mask.device() == q.device(), "attention: mask is on ", mask.device().str(),
                  " but q is on ", q.device().str());
    check_attention_mask(mask, {q.size(0), q.size(2), q.size(1), k.size(1)});
  }
  const float resolved_scale =
      scale > 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(q.size(3)));
  Tensor out = Tensor::empty({q.size(0), q.size(1), q.size(2), v.size(3)}, q.dtype(), q.device());
  if (g_flops)
    g_flops->attention += 2.0 * static_cast<double>(q.size(0) * q.size(2)) * static_cast<double>(q.size(1)) *
                          static_cast<double>(k.size(1)) * static_cast<double>(q.size(3) + v.size(3));
  run_kernel(op, q.device(), cpu::attention, CUDA_KERNEL(attention), contiguous(q),
             contiguous(k), contiguous(v), contiguous(mask), resolved_scale, out);
  return out;
}

// ---- 8-bit attention ------------------------------------------------------------------

namespace {
thread_local bool t_quantized_attention = false;

std::string attention_8bit_shape_refusal(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return "q, k and v must be [B, S, H, D]";
  if (q.dtype() != k.dtype() || q.dtype() != v.dtype() ||
      (q.dtype() != DType::BFloat16 && q.dtype() != DType::Float16))
    return "q, k and v must all be bfloat16 or all float16";
  if (q.device() != k.device() || q.device() != v.device()) return "q, k and v must be on one device";
  if (q.size(3) != attention8::kHeadDim || k.size(3) != q.size(3) || v.size(3) != q.size(3))
    return "the head dim must be 128";
  if (k.size(0) != q.size(0) || v.size(0) != q.size(0) || k.size(1) != v.size(1) || k.size(2) != v.size(2) ||
      k.size(2) == 0 || q.size(2) % k.size(2) != 0)
    return "k and v need q's batch, one sequence length and a head count dividing q's";
  if (q.size(0) == 0 || q.size(1) == 0 || q.size(2) == 0 || k.size(1) == 0) return "every size must be positive";
  return {};
}
}  // namespace

bool quantized_attention() { return t_quantized_attention; }
QuantizedAttentionScope::QuantizedAttentionScope(bool enabled) : previous_(t_quantized_attention) {
  t_quantized_attention = enabled;
}
QuantizedAttentionScope::~QuantizedAttentionScope() { t_quantized_attention = previous_; }

std::string attention_8bit_refusal(const Tensor& q, const Tensor& k, const Tensor& v) {
  std::string why = attention_8bit_shape_refusal(q, k, v);
  if (!why.empty() || q.device().is_cpu()) return why;
#ifdef FASTDIT_CUDA_KERNELS
  return cuda::attention_8bit_refusal(q, k, v);
#else
  return "no CUDA kernel in this build";
#endif
}

Tensor attention_8bit(const Tensor& q, const Tensor& k, const Tensor& v, float scale) {
  const char* op = "attention_8bit";
  const std::string why = attention_8bit_refusal(q, k, v);
  FASTDIT_CHECK(why.empty(), op, " cannot serve q ", shape_str(q.shape()), " ", dtype_name(q.dtype()), ", k ",
                shape_str(k.shape()), ", v ", shape_str(v.shape()), " on ", q.device().str(), ": ", why);
  const float resolved_scale = scale > 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(q.size(3)));
  if (g_flops)
    g_flops->attention += 4.0 * static_cast<double>(q.size(0) * q.size(2)) * static_cast<double>(q.size(1)) *
                          static_cast<double>(k.size(1)) * static_cast<double>(q.size(3));
  const attention8::Shape shape{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3)};
  if (q.device().is_cpu()) {
    Tensor out;
    observed(op, q.device(), [&] {
      const attention8::Operands operands =
          attention8::quantize(q.to_float_vector(), k.to_float_vector(), v.to_float_vector(), shape);
      const std::vector<float> values = attention8::attention(operands, resolved_scale);
      Tensor f = Tensor::empty(q.shape(), DType::Float32);
      std::copy(values.begin(), values.end(), f.data<float>());
      out = cast(f, q.dtype());
    });
    return out;
  }
#ifdef FASTDIT_CUDA_KERNELS
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  observed(op, q.device(), [&] { cuda::attention_8bit(contiguous(q), contiguous(k), contiguous(v), resolved_scale, out); });
  return out;
#else
  FASTDIT_FAIL(op, ": no CUDA kernel in this build");
#endif
}

// ---- rotary embedding ----------------------------------------------------------------

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style) {
  check_float_args("rope", {{"x", x}, {"cos", cos}, {"sin", sin}});
  require("rope", {"cos", cos});
  require("rope", {"sin", sin});
  check_rank("rope", {"x", x}, 4);
  FASTDIT_CHECK(x.size(3) % 2 == 0, "rope: head dim of x ", shape_str(x.shape()),
                " must be even");
  const int64_t rotary = cos.dim() >= 2 && cos.dim() <= 4 ? cos.size(-1) : -1;
  bool rows_fit = false;  // [S, R], [S, H, R] or [B|1, S, H|1, R]
  if (cos.dim() == 2) rows_fit = cos.size(0) == x.size(1);
  if (cos.dim() == 3) rows_fit = cos.size(0) == x.size(1) && cos.size(1) == x.size(2);
  if (cos.dim() == 4)
    rows_fit = (cos.size(0) == 1 || cos.size(0) == x.size(0)) && cos.size(1) == x.size(1) &&
               (cos.size(2) == 1 || cos.size(2) == x.size(2));
  FASTDIT_CHECK(rotary > 0 && rotary % 2 == 0 && rotary <= x.size(3) && rows_fit && cos.shape() == sin.shape(),
                "rope: cos ", shape_str(cos.shape()), " and sin ", shape_str(sin.shape()),
                " must both be [S, R], [S, H, R] or [B or 1, S, H or 1, R] with S = ", x.size(1), ", H = ",
                x.size(2), ", B = ", x.size(0), " and R even, at most D = ", x.size(3), ", for x ",
                shape_str(x.shape()));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  run_kernel("rope", x.device(), cpu::rope, CUDA_KERNEL(rope), contiguous(x), contiguous(cos),
             contiguous(sin), style, out);
  return out;
}

QKV qkv_norm_rope(const Tensor& qkv, const Tensor& norm_q, const Tensor& norm_k, float eps, int64_t heads,
                  const Tensor& cos, const Tensor& sin, RopeStyle style, QkNorm norm) {
  constexpr const char* op = "qkv_norm_rope";
  check_float_args(op, {{"qkv", qkv}, {"norm_q", norm_q}, {"norm_k", norm_k}, {"cos", cos}, {"sin", sin}});
  for (const Arg& arg : {Arg{"norm_q", norm_q}, Arg{"norm_k", norm_k}, Arg{"cos", cos}, Arg{"sin", sin}})
    require(op, arg);
  check_rank(op, {"qkv", qkv}, 3);
  const int64_t d = qkv.size(2) / 3;
  FASTDIT_CHECK(d > 0 && qkv.size(2) == 3 * d && heads > 0 && d % heads == 0 && (d / heads) % 2 == 0, op, ": qkv ",
                shape_str(qkv.shape()), " does not split into 3 x ", heads, " heads of an even size");
  const int64_t head_dim = d / heads;
  const bool per_head = norm != QkNorm::AcrossHeads, round_before_weight = norm == QkNorm::PerHead;
  check_vector(op, {"norm_q", norm_q}, per_head ? head_dim : d);
  check_vector(op, {"norm_k", norm_k}, per_head ? head_dim : d);
  FASTDIT_CHECK(!round_before_weight || (norm_q.dtype() == qkv.dtype() && norm_k.dtype() == qkv.dtype()), op,
                ": per-head norms round before the weight and need the weights in qkv's dtype (", dtype_name(qkv.dtype()),
                "), got ", dtype_name(norm_q.dtype()), " and ", dtype_name(norm_k.dtype()));
  // One table row per token, or per (token, head) and item: what ops::rope takes, rotating
  // whole heads.
  const int64_t batch = qkv.size(0), seq = qkv.size(1);
  bool table_fits = cos.shape() == sin.shape() && cos.dim() >= 2 && cos.size(-1) == head_dim;
  if (table_fits && cos.dim() == 2) table_fits = cos.size(0) == seq;
  if (table_fits && cos.dim() == 3) table_fits = cos.size(0) == seq && cos.size(1) == heads;
  if (table_fits && cos.dim() == 4)
    table_fits = (cos.size(0) == 1 || cos.size(0) == batch) && cos.size(1) == seq &&
                 (cos.size(2) == 1 || cos.size(2) == heads);
  FASTDIT_CHECK(table_fits && cos.dim() <= 4, op,
                ": cos/sin must be [S, D/H], [S, H, D/H] or [B or 1, S, H or 1, D/H] with S = ", seq, ", H = ", heads,
                ", D/H = ", head_dim, ", B = ", batch, ", got ", shape_str(cos.shape()), " and ",
                shape_str(sin.shape()));
  const Shape shape{qkv.size(0), qkv.size(1), heads, head_dim};
#ifdef FASTDIT_CUDA_KERNELS
  if (qkv.device().is_cuda() && cos.dtype() == DType::Float32 && sin.dtype() == DType::Float32 &&
      norm_q.dtype() == norm_k.dtype()) {
    QKV out{Tensor::empty(shape, qkv.dtype(), qkv.device()), Tensor::empty(shape, qkv.dtype(), qkv.device()),
            Tensor::empty(shape, qkv.dtype(), qkv.device())};
    bool served = false;
    observed(op, qkv.device(), [&] {
      // The q|k|v columns of a wider projection (Flux's single blocks) are read in place.
      served = cuda::qkv_norm_rope(even_row_stride(qkv) ? qkv : qkv.contiguous(), contiguous(norm_q),
                                   contiguous(norm_k), eps, contiguous(cos), contiguous(sin), style, per_head,
                                   round_before_weight, out.q, out.k, out.v);
    });
    if (served) return out;
  }
#endif
  const auto part = [&](int64_t i) { return qkv.narrow(-1, i * d, d); };
  if (per_head) {
    const auto normed = [&](int64_t i, const Tensor& w) {
      return rms_norm(part(i).reshape(shape), w, eps, round_before_weight ? Rounding::EachStep : Rounding::Once);
    };
    return {rope(normed(0, norm_q), cos, sin, style), rope(normed(1, norm_k), cos, sin, style),
            part(2).contiguous().reshape(shape)};
  }
  return {rope(rms_norm(part(0), norm_q, eps).reshape(shape), cos, sin, style),
          rope(rms_norm(part(1), norm_k, eps).reshape(shape), cos, sin, style), part(2).contiguous().reshape(shape)};
}

// ---- layout --------------------------------------------------------------------------
// Views plus a copy: core's device hooks already copy strided tensors on every device.

Tensor permute(const Tensor& x, std::span<const int64_t> dims) {
  FASTDIT_CHECK(x.defined(), "permute: x is undefined");
  return x.permute(dims).clone();
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  FASTDIT_CHECK(x.defined(), "transpose: x is undefined");
  return x.transpose(normalize_dim("transpose", dim0, x), normalize_dim("transpose", dim1, x))
      .clone();
}

Tensor concat(std::span<const Tensor> tensors, int64_t dim) {
  FASTDIT_CHECK(!tensors.empty(), "concat: no tensors");
  const Tensor& first = tensors.front();
  FASTDIT_CHECK(first.defined(), "concat: tensor 0 is undefined");
  const int64_t d = normalize_dim("concat", dim, first);
  Shape shape = first.shape();
  shape[d] = 0;
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    FASTDIT_CHECK(t.defined(), "concat: tensor ", i, " is undefined");
    bool fits = t.dim() == first.dim();
    for (int64_t j = 0; fits && j < t.dim(); ++j) fits = j == d || t.size(j) == first.size(j);
    FASTDIT_CHECK(fits, "concat: tensor ", i, " ", shape_str(t.shape()), " does not match tensor 0 ",
                  shape_str(first.shape()), " outside dim ", d);
    FASTDIT_CHECK(t.dtype() == first.dtype(), "concat: tensor ", i, " has dtype ",
                  dtype_name(t.dtype()), " but tensor 0 has ", dtype_name(first.dtype()));
    FASTDIT_CHECK(t.device() == first.device(), "concat: tensor ", i, " is on ", t.device().str(),
                  " but tensor 0 is on ", first.device().str());
    shape[d] += t.size(d);
    inputs.push_back(t.contiguous());
  }
  Tensor out = Tensor::empty(std::move(shape), first.dtype(), first.device());
  run_kernel("concat", first.device(), cpu::concat, CUDA_KERNEL(concat),
             std::span<const Tensor>(inputs), d, out);
  return out;
}

std::vector<Tensor> split(const Tensor& x, std::span<const int64_t> sizes, int64_t dim) {
  FASTDIT_CHECK(x.defined(), "split: x is undefined");
  const int64_t d = normalize_dim("split", dim, x);
  int64_t total = 0;
  for (int64_t size : sizes) {
    FASTDIT_CHECK(size >= 0, "split: negative size ", size);
    total += size;
  }
  FASTDIT_CHECK(total == x.size(d), "split: sizes ", shape_str(sizes), " sum to ", total,
                " but dim ", d, " of x ", shape_str(x.shape()), " has ", x.size(d));
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t size : sizes) {
    parts.push_back(x.narrow(d, start, size).clone());
    start += size;
  }
  return parts;
}

Tensor cast(const Tensor& x, DType dtype) {
  FASTDIT_CHECK(x.defined(), "cast: x is undefined");
  return x.to(dtype).contiguous();
}

// ---- embeddings ----------------------------------------------------------------------

Tensor conv3d_patch(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_float_args("conv3d_patch", {{"x", x}, {"weight", weight}, {"bias", bias}});
  require("conv3d_patch", {"weight", weight});
  check_rank("conv3d_patch", {"x", x}, 5);
  check_rank("conv3d_patch", {"weight", weight}, 5);
  FASTDIT_CHECK(x.size(1) == weight.size(1), "conv3d_patch: x ", shape_str(x.shape()),
                " and weight ", shape_str(weight.shape()), " disagree on channels");
  for (int64_t d = 2; d < 5; ++d) {
    FASTDIT_CHECK(weight.size(d) > 0 && x.size(d) % weight.size(d) == 0, "conv3d_patch: x ",
                  shape_str(x.shape()), " is not a whole number of ", shape_str(weight.shape()),
                  " patches");
  }
  check_vector("conv3d_patch", {"bias", bias}, weight.size(0));
  Tensor out = Tensor::empty({x.size(0), weight.size(0), x.size(2) / weight.size(2),
                              x.size(3) / weight.size(3), x.size(4) / weight.size(4)},
                             x.dtype(), x.device());
  run_kernel("conv3d_patch", x.device(), cpu::conv3d_patch, CUDA_KERNEL(conv3d_patch),
             contiguous(x), contiguous(weight), contiguous(bias), out);
  return out;
}

Tensor timestep_embedding(const Tensor& t, int64_t dim, bool flip_sin_to_cos,
                          float downscale_freq_shift, float scale, float max_period) {
  FASTDIT_CHECK(t.defined(), "timestep_embedding: t is undefined");
  FASTDIT_CHECK(t.dim() == 1, "timestep_embedding: t ", shape_str(t.shape()), " must be [N]");
  FASTDIT_CHECK(t.dtype() != DType::Bool, "timestep_embedding: t must be numeric, not bool");
  FASTDIT_CHECK(dim > 0, "timestep_embedding: dim must be positive, got ", dim);
  Tensor out = Tensor::empty({t.size(0), dim}, DType::Float32, t.device());
  run_kernel("timestep_embedding", t.device(), cpu::timestep_embedding,
             CUDA_KERNEL(timestep_embedding), contiguous(t), flip_sin_to_cos, downscale_freq_shift,
             scale, max_period, out);
  return out;
}

// ---- accounting and test data ---------------------------------------------------------

void start_flop_count() {
  static FlopCount count;
  count = {};
  g_flops = &count;
}

FlopCount stop_flop_count() {
  FASTDIT_CHECK(g_flops != nullptr, "stop_flop_count without start_flop_count");
  const FlopCount count = *g_flops;
  g_flops = nullptr;
  return count;
}

void set_kernel_observer(KernelObserver* observer) { g_kernel_observer = observer; }

Tensor random_uniform(const Shape& shape, DType dtype, uint64_t seed, float lo, float hi) {
  Tensor values = Tensor::empty(shape, DType::Float32);
  float* p = values.data<float>();
  const int64_t n = values.numel();
  const double span = static_cast<double>(hi) - lo;
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    // splitmix64 of (seed, index): independent of how the loop is split.
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i) + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    p[i] = static_cast<float>(lo + span * static_cast<double>(z >> 11) * 0x1.0p-53);
  }
  return values.to(dtype);
}

}  // namespace fastdit::ops
