// The op harness: one table of op cases, each run through ops:: on the CPU (the float32
// oracle) and on every other backend built in (CUDA), so what is tested is what a model
// calls, the dispatch to fused and fallback kernels included. Shaped after ggml's
// test-backend-ops.
//
//   fastdit_backend_ops                 every case on CUDA against the CPU (needs a GPU)
//   fastdit_backend_ops --cpu-only      every case on the CPU alone: runs, finite, repeatable
//   fastdit_backend_ops --coverage      every op of src/ops/ops.h has a case (no GPU needed)
//   fastdit_backend_ops --perf          the perf cases on CUDA: time, GB/s, TFLOP/s
//   --filter TEXT                       only cases whose label contains TEXT
//   --list                              print the cases
//
// Every CUDA allocation is filled with NaN bits while a case runs (cuda::set_allocation_poison),
// so an element a kernel forgets to write fails the comparison. One error metric:
// rel_l2 = ||got - want|| / ||want|| over the outputs, with a bound per dtype (float32 1e-5,
// bfloat16 / float16 1e-2, the latter also for a float32 case whose outputs are bfloat16 or
// float16) unless a case states its own; layout ops must be bit-identical.
// A non-finite element must sit where the oracle has the same non-finite value.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"
#include "support/test_support.h"

#ifdef FASTDIT_WITH_CUDA
#include "backends/cuda/cuda_device.h"
#endif

namespace fastdit {
namespace {

using ops::GeluApprox;
using ops::RopeStyle;
using Tensors = std::vector<Tensor>;

constexpr DType kF32 = DType::Float32, kBF16 = DType::BFloat16, kF16 = DType::Float16;
const std::vector<DType> kAllFloat = {kF32, kBF16, kF16};
const std::vector<DType> kHalfOnly = {kBF16, kF16};

// What a case's inputs are made with: the same seeds on every backend, so each backend
// sees the same numbers (made on the CPU in float32, rounded to the dtype, then moved).
struct Inputs {
  DType dtype;
  uint64_t seed;
  Tensor rand(const Shape& shape, float lo = -1.0f, float hi = 1.0f) { return rand_as(dtype, shape, lo, hi); }
  Tensor rand_as(DType as, const Shape& shape, float lo = -1.0f, float hi = 1.0f) {
    return testing::random_tensor(shape, seed++, lo, hi).to(as);
  }
  // Keeps a key with probability `keep`; row `dead_row` of query rows keeps none.
  Tensor bool_mask(const Shape& shape, float keep, int64_t dead_row = -1) {
    const Tensor r = testing::random_tensor(shape, seed++, 0.0f, 1.0f);
    Tensor m = Tensor::empty(shape, DType::Bool);
    const std::vector<float> values = r.to_float_vector();
    const int64_t keys = shape.back();
    for (size_t i = 0; i < values.size(); ++i) {
      const bool dead = dead_row >= 0 && static_cast<int64_t>(i) / keys == dead_row;
      m.data<bool>()[i] = !dead && values[i] < keep;
    }
    return m;
  }
};

struct OpCase {
  std::string op;     // the ops:: function the case calls (coverage key)
  std::string shape;  // what varies: shapes, flags
  std::vector<DType> dtypes = kAllFloat;
  std::function<Tensors(Inputs&)> make;             // inputs, on the CPU
  std::function<Tensors(const Tensors&)> call;      // the op on those inputs (any device)
  double bound_f32 = 1e-5, bound_half = 1e-2;
  bool exact = false;                    // bit-identical (layout, concat, casts)
  const char* attention_backend = "";    // FASTDIT_ATTENTION_BACKEND for the CUDA side
  bool perf = false;                     // timed by --perf (large shapes, CUDA only)
  bool check = true;                     // compared against the CPU (perf-only cases are not)
  std::string label(DType dtype) const {
    std::string s = op + " " + dtype_name(dtype) + " " + shape;
    if (*attention_backend) s += std::string(" [") + attention_backend + "]";
    return s;
  }
};

std::string str(const Shape& s) { return shape_str(s); }

std::vector<OpCase> make_cases() {
  std::vector<OpCase> cases;
  const auto add = [&](OpCase c) { cases.push_back(std::move(c)); };

  // ---- GEMM ------------------------------------------------------------------------------
  struct Lin {
    Shape x, w;
    bool bias;
  };
  for (const Lin& l : {Lin{{2, 7, 33}, {17, 33}, true}, Lin{{1, 1}, {1, 1}, true}, Lin{{5, 64}, {3, 64}, false},
                       Lin{{3}, {4, 3}, true}, Lin{{2, 3, 5, 129}, {31, 129}, true}, Lin{{3, 77, 320}, {640, 320}, true}}) {
    add({.op = "linear", .shape = str(l.x) + "x" + str(l.w) + (l.bias ? " +bias" : ""),
         .make = [l](Inputs& in) { return Tensors{in.rand(l.x), in.rand(l.w), l.bias ? in.rand({l.w[0]}) : Tensor{}}; },
         .call = [](const Tensors& t) { return Tensors{ops::linear(t[0], t[1], t[2])}; }});
    for (GeluApprox approx : {GeluApprox::Tanh, GeluApprox::None}) {
      add({.op = "linear_gelu", .shape = str(l.x) + "x" + str(l.w) + (approx == GeluApprox::Tanh ? " tanh" : " erf"),
           .make = [l](Inputs& in) { return Tensors{in.rand(l.x), in.rand(l.w), l.bias ? in.rand({l.w[0]}) : Tensor{}}; },
           .call = [approx](const Tensors& t) { return Tensors{ops::linear_gelu(t[0], t[1], t[2], approx)}; }});
    }
  }
  add({.op = "linear", .shape = "bf16 x, f32 weight and bias [9,40]x[24,40]", .dtypes = {kBF16},
       .make = [](Inputs& in) { return Tensors{in.rand({9, 40}), in.rand_as(kF32, {24, 40}), in.rand_as(kF32, {24})}; },
       .call = [](const Tensors& t) { return Tensors{ops::linear(t[0], t[1], t[2])}; }});
  // x and bias starting one element past an allocation (2 bytes in bfloat16): cuBLASLt must
  // be told, or the op falls back.
  add({.op = "linear", .shape = "x and bias off 16-byte alignment [9,40]x[24,40]", .dtypes = kHalfOnly,
       .make = [](Inputs& in) { return Tensors{in.rand({1 + 9 * 40}), in.rand({24, 40}), in.rand({25})}; },
       .call = [](const Tensors& t) {
         return Tensors{ops::linear(t[0].narrow(0, 1, 9 * 40).reshape({9, 40}), t[1], t[2].narrow(0, 1, 24))};
       }});
  add({.op = "linear", .shape = "strided x [33,20]^T", .make = [](Inputs& in) { return Tensors{in.rand({20, 33}), in.rand({8, 20})}; },
       .call = [](const Tensors& t) { return Tensors{ops::linear(t[0].transpose(0, 1), t[1])}; }});

  // ---- FP8 (e4m3) GEMM --------------------------------------------------------------------
  // Quantization is bit-exact (the rule of ops/fp8.h); rows of whole 16-byte runs take the
  // vectorised kernel. The GEMM against the exact CPU emulation differs by float32
  // accumulation order and the one bfloat16 rounding.
  for (const Shape& s : {Shape{3, 1}, Shape{5, 33}, Shape{2, 7, 1536}, Shape{4, 8960}, Shape{0, 16}, Shape{3, 0}}) {
    add({.op = "quantize_fp8_rows", .shape = str(s),
         .make = [s](Inputs& in) { return Tensors{in.rand(s, -3.0f, 3.0f)}; },
         .call = [](const Tensors& t) {
           const ops::Fp8Rows q = ops::quantize_fp8_rows(t[0]);
           return Tensors{q.values, q.scales};
         }, .exact = true});
  }
  for (const Lin& l : {Lin{{2, 9, 64}, {48, 64}, true}, Lin{{1, 16}, {16, 16}, false}, Lin{{3, 77, 320}, {640, 320}, true}}) {
    for (const bool gelu : {false, true}) {
      add({.op = "linear_fp8", .shape = str(l.x) + "x" + str(l.w) + (l.bias ? " +bias" : "") + (gelu ? " gelu tanh" : ""),
           .dtypes = {kBF16},
           .make = [l](Inputs& in) { return Tensors{in.rand(l.x), in.rand(l.w), l.bias ? in.rand({l.w[0]}) : Tensor{}}; },
           .call = [gelu](const Tensors& t) {
             const ops::Fp8Rows w = ops::quantize_fp8_rows(t[1]);
             return Tensors{ops::linear_fp8(t[0], w.values, w.scales, t[2],
                                            gelu ? std::optional(GeluApprox::Tanh) : std::nullopt)};
           }});
    }
  }

  // ---- 8-bit attention ---------------------------------------------------------------------
  // The sm_90a kernel against the CPU emulation of the same rule (ops/attention_8bit.h): the
  // kernel's running-max P and its order of sums move the output by about an e4m3 step of P
  // over the keys (measured 0.003-0.006 on the H200), inside the half-precision bound.
  for (const auto& [q, k] : {std::pair{Shape{1, 130, 2, 128}, Shape{1, 200, 1, 128}},
                             std::pair{Shape{2, 64, 4, 128}, Shape{2, 64, 4, 128}}}) {
    add({.op = "attention_8bit", .shape = str(q) + " kv " + str(k), .dtypes = kHalfOnly,
         .make = [q, k](Inputs& in) { return Tensors{in.rand(q), in.rand(k, -2.0f, 3.0f), in.rand(k)}; },
         .call = [](const Tensors& t) { return Tensors{ops::attention_8bit(t[0], t[1], t[2])}; }});
  }

  // ---- norms -----------------------------------------------------------------------------
  // Rows of whole 16-byte runs take the vectorised kernel, the others and rows too long for
  // registers ({2, 20000}) the generic one.
  for (const Shape& s : {Shape{3, 1}, Shape{5, 33}, Shape{2, 7, 1000}, Shape{4097}, Shape{2, 3, 3072}, Shape{33, 1536},
                         Shape{2, 9, 5120}, Shape{2, 20000}}) {
    const int64_t d = s.back();
    add({.op = "layer_norm", .shape = str(s) + " affine",
         .make = [s, d](Inputs& in) { return Tensors{in.rand(s, -3, 5), in.rand_as(kF32, {d}), in.rand({d})}; },
         .call = [](const Tensors& t) { return Tensors{ops::layer_norm(t[0], t[1], t[2], 1e-6f)}; }});
    add({.op = "layer_norm", .shape = str(s) + " no affine", .make = [s](Inputs& in) { return Tensors{in.rand(s, -3, 5)}; },
         .call = [](const Tensors& t) { return Tensors{ops::layer_norm(t[0], {}, {}, 1e-5f)}; }});
    add({.op = "rms_norm", .shape = str(s) + " weight",
         .make = [s, d](Inputs& in) { return Tensors{in.rand(s, -3, 5), in.rand_as(kF32, {d})}; },
         .call = [](const Tensors& t) { return Tensors{ops::rms_norm(t[0], t[1], 1e-6f)}; }});
    add({.op = "rms_norm", .shape = str(s) + " no weight", .make = [s](Inputs& in) { return Tensors{in.rand(s, -3, 5)}; },
         .call = [](const Tensors& t) { return Tensors{ops::rms_norm(t[0], {}, 1e-6f)}; }});
    add({.op = "rms_norm", .shape = str(s) + " weight, rounded before it",
         .make = [s, d](Inputs& in) { return Tensors{in.rand(s, -3, 5), in.rand({d})}; },
         .call = [](const Tensors& t) { return Tensors{ops::rms_norm(t[0], t[1], 1e-6f, ops::Rounding::EachStep)}; }});
  }
  // rms_norm reads a column range of a wider tensor in place (the q or k columns of a fused
  // q|k|v projection): whole 16-byte runs at a 16-byte row stride take the vectorised
  // kernel, the others (a stride or start off the runs, a row of 100) the generic one.
  struct Columns {
    int64_t d, wide, start;
  };
  for (const Columns c : {Columns{96, 3 * 96, 96}, Columns{1536, 3 * 1536, 1536}, Columns{100, 300, 200},
                          Columns{1536, 2 * 1536 + 4, 4}}) {
    add({.op = "rms_norm",
         .shape = str({2, 37, c.wide}) + " columns [" + std::to_string(c.start) + ", +" + std::to_string(c.d) + ") weight",
         .make = [c](Inputs& in) { return Tensors{in.rand({2, 37, c.wide}, -3, 5), in.rand_as(kF32, {c.d})}; },
         .call = [c](const Tensors& t) { return Tensors{ops::rms_norm(t[0].narrow(-1, c.start, c.d), t[1], 1e-6f)}; }});
  }
  for (int64_t d : {96, 1536, 100, 5120}) {
    for (int64_t rows : {1, 37}) {
      for (DType out : {DType::Float32, DType::BFloat16}) {
        add({.op = "layer_norm_modulate", .shape = str({2, 37, d}) + " modulation rows " + std::to_string(rows) + " -> " + dtype_name(out),
             .make = [d, rows](Inputs& in) {
               return Tensors{in.rand({2, 37, d}, -2, 3), in.rand_as(kF32, {2, rows, d}), in.rand({2, rows, d})};
             },
             .call = [out](const Tensors& t) { return Tensors{ops::layer_norm_modulate(t[0], t[1], t[2], 1e-6f, out)}; }});
      }
    }
  }
  // The RMS norm modulated, with and without a weight, into either dtype.
  for (int64_t d : {96, 1536, 100, 5120}) {
    for (int64_t rows : {1, 37}) {
      for (bool weighted : {false, true}) {
        const DType out = (rows == 1) == weighted ? DType::Float32 : DType::BFloat16;
        add({.op = "rms_norm_modulate",
             .shape = str({2, 37, d}) + " modulation rows " + std::to_string(rows) + (weighted ? " weight" : "") + " -> " +
                      dtype_name(out),
             .make = [d, rows, weighted](Inputs& in) {
               return Tensors{in.rand({2, 37, d}, -2, 3), in.rand_as(kF32, {2, rows, d}), in.rand({2, rows, d}),
                              weighted ? in.rand_as(kF32, {d}) : Tensor{}};
             },
             .call = [out](const Tensors& t) { return Tensors{ops::rms_norm_modulate(t[0], t[3], t[1], t[2], 1e-6f, out)}; }});
      }
      // Each step rounded (LTX-2's norm, then its bf16 modulation), into x's dtype.
      add({.op = "rms_norm_modulate", .shape = str({2, 37, d}) + " modulation rows " + std::to_string(rows) + " each step",
           .make = [d, rows](Inputs& in) {
             return Tensors{in.rand({2, 37, d}, -2, 3), in.rand({2, rows, d}), in.rand({2, rows, d})};
           },
           .call = [](const Tensors& t) {
             return Tensors{ops::rms_norm_modulate(t[0], {}, t[1], t[2], 1e-6f, t[0].dtype(), ops::Rounding::EachStep)};
           }});
    }
  }
  // Modulation per frame: x [B, T, N, D] with shift/scale/gate [B, T, 1, D] (LongCat's per
  // latent-frame tables), through the modulated norms, the gated residual and the fused add.
  for (int64_t d : {96, 100, 1536}) {
    const Shape x{2, 3, 37, d}, frame{2, 3, 1, d};
    add({.op = "layer_norm_modulate", .shape = str(x) + " per frame " + str(frame) + " -> bfloat16",
         .make = [=](Inputs& in) { return Tensors{in.rand(x, -2, 3), in.rand_as(kF32, frame), in.rand_as(kF32, frame)}; },
         .call = [](const Tensors& t) { return Tensors{ops::layer_norm_modulate(t[0], t[1], t[2], 1e-6f, kBF16)}; }});
    add({.op = "rms_norm_modulate", .shape = str(x) + " per frame " + str(frame) + " weight -> float32",
         .make = [=](Inputs& in) {
           return Tensors{in.rand(x, -2, 3), in.rand_as(kF32, frame), in.rand_as(kF32, frame), in.rand({d})};
         },
         .call = [](const Tensors& t) { return Tensors{ops::rms_norm_modulate(t[0], t[3], t[1], t[2], 1e-6f, kF32)}; }});
    add({.op = "gated_add", .shape = str(x) + " per frame gate " + str(frame) + " -> residual dtype",
         .make = [=](Inputs& in) { return Tensors{in.rand(x), in.rand(x), in.rand_as(kF32, frame)}; },
         .call = [](const Tensors& t) { return Tensors{ops::gated_add(t[0], t[1], t[2], t[0].dtype())}; }});
    for (ops::NormKind kind : {ops::NormKind::Layer, ops::NormKind::Rms}) {
      add({.op = "add_layer_norm",
           .shape = str(x) + " per frame gate, shift, scale " + str(frame) + (kind == ops::NormKind::Rms ? " rms" : ""),
           .make = [=](Inputs& in) {
             return Tensors{in.rand(x, -2, 3), in.rand(x), in.rand_as(kF32, frame), in.rand_as(kF32, frame), in.rand(frame)};
           },
           .call = [kind](const Tensors& t) {
             const ops::AddNorm r = ops::add_layer_norm(t[0], t[1], t[2], {}, {}, t[3], t[4], 1e-6f, kind);
             return Tensors{r.sum, r.normed};
           }});
    }
  }
  // The fused add + RMS norm: with and without weight, or modulated; gate per item / token.
  for (int64_t d : {96, 1536, 100, 5120}) {
    for (int64_t gate_rows : {0, 1, 37}) {
      for (int form : {0, 1, 2}) {  // 0: no weight, 1: weight, 2: modulated
        const Shape s{2, 37, d};
        const int64_t rows = gate_rows == 0 ? 1 : gate_rows;
        add({.op = "add_layer_norm",
             .shape = str(s) + " rms gate rows " + std::to_string(gate_rows) +
                      (form == 0 ? " no weight" : form == 1 ? " weight" : " modulated"),
             .make = [=](Inputs& in) {
               Tensors t{in.rand(s, -2, 3), in.rand(s), gate_rows ? in.rand_as(kF32, {2, rows, d}) : Tensor{}};
               if (form == 1) t.push_back(in.rand_as(kF32, {d}));
               if (form == 2) {
                 t.push_back(in.rand_as(kF32, {2, rows, d}));
                 t.push_back(in.rand({2, rows, d}));
               }
               return t;
             },
             .call = [form](const Tensors& t) {
               const ops::AddNorm r =
                   form == 2 ? ops::add_layer_norm(t[0], t[1], t[2], {}, {}, t[3], t[4], 1e-6f, ops::NormKind::Rms)
                             : ops::add_layer_norm(t[0], t[1], t[2], form == 1 ? t[3] : Tensor{}, {}, {}, {}, 1e-6f,
                                                   ops::NormKind::Rms);
               return Tensors{r.sum, r.normed};
             }});
      }
    }
  }
  // Each step rounded (LTX-2's bf16 gated residual, then its norm and modulation): the gated
  // sum, the plain norm and the modulated norm, layer and RMS; 20000 takes the unfused rows.
  for (int64_t d : {96, 100, 2048, 20000}) {
    for (int form : {0, 1, 2}) {  // 0: gated, norm; 1: ungated, norm; 2: gated, modulated norm
      for (ops::NormKind kind : {ops::NormKind::Layer, ops::NormKind::Rms}) {
        const Shape s{2, 5, d}, row{2, 1, d};
        add({.op = "add_layer_norm",
             .shape = str(s) + (form == 1 ? " no gate" : " gate rows 1") + (form == 2 ? " modulated" : "") +
                      (kind == ops::NormKind::Rms ? " rms" : "") + " each step",
             .make = [=](Inputs& in) {
               return Tensors{in.rand(s, -2, 3), in.rand(s), in.rand(row), in.rand(row), in.rand(row)};
             },
             .call = [form, kind](const Tensors& t) {
               const Tensor gate = form == 1 ? Tensor{} : t[2];
               const ops::AddNorm r = ops::add_layer_norm(t[0], t[1], gate, {}, {}, form == 2 ? t[3] : Tensor{},
                                                          form == 2 ? t[4] : Tensor{}, 1e-6f, kind,
                                                          ops::Rounding::EachStep);
               return Tensors{r.sum, r.normed};
             }});
      }
    }
  }
  // The fused add + norm: no gate, a gate per item, a gate per token; x of the residual's
  // dtype or float32; affine or modulated; and an operand off 16-byte alignment (unfused).
  for (int64_t d : {96, 1536, 100, 5120}) {
    for (int64_t gate_rows : {0, 1, 37}) {
      for (bool wide_x : {false, true}) {
        for (bool modulated : {false, true}) {
          const Shape s{2, 37, d};
          const int64_t rows = gate_rows == 0 ? 1 : gate_rows;
          add({.op = "add_layer_norm",
               .shape = str(s) + " gate rows " + std::to_string(gate_rows) + (wide_x ? " f32 x" : "") +
                        (modulated ? " modulated" : " affine"),
               .make = [=](Inputs& in) {
                 Tensors t{in.rand(s, -2, 3), wide_x ? in.rand_as(kF32, s) : in.rand(s),
                           gate_rows ? in.rand_as(kF32, {2, rows, d}) : Tensor{}};
                 if (modulated) {
                   t.push_back(in.rand_as(kF32, {2, rows, d}));
                   t.push_back(in.rand({2, rows, d}));
                 } else {
                   t.push_back(in.rand_as(kF32, {d}));
                   t.push_back(in.rand_as(kF32, {d}));
                 }
                 return t;
               },
               .call = [modulated](const Tensors& t) {
                 const ops::AddNorm r = modulated ? ops::add_layer_norm(t[0], t[1], t[2], {}, {}, t[3], t[4], 1e-6f)
                                                  : ops::add_layer_norm(t[0], t[1], t[2], t[3], t[4], {}, {}, 1e-6f);
                 return Tensors{r.sum, r.normed};
               }});
        }
      }
    }
  }
  add({.op = "add_layer_norm", .shape = "[2,37,1536] residual off 16-byte alignment", .dtypes = {kBF16},
       .make = [](Inputs& in) {
         return Tensors{in.rand({1 + 2 * 37 * 1536}), in.rand({2, 37, 1536}), in.rand_as(kF32, {2, 1, 1536}),
                        in.rand_as(kF32, {1536}), in.rand_as(kF32, {1536})};
       },
       .call = [](const Tensors& t) {
         const Tensor residual = t[0].narrow(0, 1, 2 * 37 * 1536).reshape({2, 37, 1536});
         const ops::AddNorm r = ops::add_layer_norm(residual, t[1], t[2], t[3], t[4], {}, {}, 1e-6f);
         return Tensors{r.sum, r.normed};
       }});

  // ---- activations and elementwise -----------------------------------------------------------
  for (const Shape& s : {Shape{1}, Shape{7, 13, 5}, Shape{1000003}}) {
    const auto x = [s](Inputs& in) { return Tensors{in.rand(s, -6, 6)}; };
    add({.op = "gelu", .shape = str(s) + " erf", .make = x, .call = [](const Tensors& t) { return Tensors{ops::gelu(t[0])}; }});
    add({.op = "gelu", .shape = str(s) + " tanh", .make = x,
         .call = [](const Tensors& t) { return Tensors{ops::gelu(t[0], GeluApprox::Tanh)}; }});
    add({.op = "silu", .shape = str(s), .make = x, .call = [](const Tensors& t) { return Tensors{ops::silu(t[0])}; }});
    add({.op = "sigmoid", .shape = str(s), .make = x, .call = [](const Tensors& t) { return Tensors{ops::sigmoid(t[0])}; }});
    add({.op = "scale", .shape = str(s), .make = x, .call = [](const Tensors& t) { return Tensors{ops::scale(t[0], -0.37f)}; }});
    add({.op = "cos", .shape = str(s), .make = x, .call = [](const Tensors& t) { return Tensors{ops::cos(t[0])}; }});
    add({.op = "sin", .shape = str(s), .make = x, .call = [](const Tensors& t) { return Tensors{ops::sin(t[0])}; }});
    add({.op = "clamp", .shape = str(s), .make = x, .call = [](const Tensors& t) { return Tensors{ops::clamp(t[0], -2.5f, 1.25f)}; }});
  }
  for (const Shape& s : {Shape{1, 2}, Shape{3, 7, 38}, Shape{2, 1025, 2 * 6144}}) {
    add({.op = "swiglu", .shape = str(s), .make = [s](Inputs& in) { return Tensors{in.rand(s, -6, 6)}; },
         .call = [](const Tensors& t) { return Tensors{ops::swiglu(t[0])}; }});
  }
  for (const auto& [a, b] : std::vector<std::pair<Shape, Shape>>{{{2, 3, 5}, {2, 3, 5}}, {{2, 3, 5}, {5}}, {{2, 1, 5}, {1, 3, 1}},
                                                                  {{4, 1}, {3}}, {{1}, {6, 7}}, {{2, 300, 257}, {2, 1, 257}}}) {
    const auto make = [a, b](Inputs& in) { return Tensors{in.rand(a), in.rand(b)}; };
    const std::string shape = str(a) + " " + str(b);
    add({.op = "add", .shape = shape, .make = make, .call = [](const Tensors& t) { return Tensors{ops::add(t[0], t[1])}; }});
    add({.op = "sub", .shape = shape, .make = make, .call = [](const Tensors& t) { return Tensors{ops::sub(t[0], t[1])}; }});
    add({.op = "mul", .shape = shape, .make = make, .call = [](const Tensors& t) { return Tensors{ops::mul(t[0], t[1])}; }});
  }
  add({.op = "add", .shape = "bf16 [3,8] + f16 [8] -> f32", .dtypes = {kF32},
       .make = [](Inputs& in) { return Tensors{in.rand_as(kBF16, {3, 8}), in.rand_as(kF16, {8})}; },
       .call = [](const Tensors& t) { return Tensors{ops::add(t[0], t[1])}; }});
  add({.op = "mul", .shape = "strided a [5,6]^T", .make = [](Inputs& in) { return Tensors{in.rand({5, 6}), in.rand({6, 5})}; },
       .call = [](const Tensors& t) { return Tensors{ops::mul(t[0].transpose(0, 1), t[1])}; }});
  for (const Shape& m : {Shape{2, 1, 96}, Shape{2, 37, 96}, Shape{96}}) {
    add({.op = "modulate", .shape = "[2,37,96] by " + str(m),
         .make = [m](Inputs& in) { return Tensors{in.rand({2, 37, 96}), in.rand(m), in.rand(m)}; },
         .call = [](const Tensors& t) { return Tensors{ops::modulate(t[0], t[1], t[2])}; }});
    add({.op = "gated_add", .shape = "[2,37,96] by " + str(m),
         .make = [m](Inputs& in) { return Tensors{in.rand({2, 37, 96}), in.rand({2, 37, 96}), in.rand(m)}; },
         .call = [](const Tensors& t) { return Tensors{ops::gated_add(t[0], t[1], t[2])}; }});
  }
  add({.op = "modulate", .shape = "bf16 x, f32 shift/scale -> bf16", .dtypes = {kBF16},
       .make = [](Inputs& in) { return Tensors{in.rand({2, 5, 16}), in.rand_as(kF32, {2, 1, 16}), in.rand_as(kF32, {2, 1, 16})}; },
       .call = [](const Tensors& t) { return Tensors{ops::modulate(t[0], t[1], t[2], kBF16)}; }});
  // The Wan block's gated residual: the rows kernel (float32 gate per item or per token),
  // into a new tensor and in place.
  for (const Shape& g : {Shape{2, 1, 1536}, Shape{2, 300, 1536}}) {
    const auto make = [g](Inputs& in) { return Tensors{in.rand({2, 300, 1536}), in.rand({2, 300, 1536}), in.rand_as(kF32, g)}; };
    add({.op = "gated_add", .shape = "rows [2,300,1536] gate " + str(g) + " -> residual dtype", .make = make,
         .call = [](const Tensors& t) { return Tensors{ops::gated_add(t[0], t[1], t[2], t[0].dtype())}; }});
    add({.op = "gated_add_", .shape = "in place [2,300,1536] gate " + str(g), .make = make,
         .call = [](const Tensors& t) {
           Tensor residual = t[0].clone();
           ops::gated_add_(residual, t[1], t[2]);
           return Tensors{residual};
         }});
  }
  add({.op = "gated_add_", .shape = "a contiguous view of rows [1,300,1536][:, 100:200]", .dtypes = {kBF16},
       .make = [](Inputs& in) { return Tensors{in.rand({1, 300, 1536}), in.rand({1, 100, 1536}), in.rand_as(kF32, {1, 1, 1536})}; },
       .call = [](const Tensors& t) {
         Tensor residual = t[0].clone();
         Tensor rows = residual.narrow(1, 100, 100);
         ops::gated_add_(rows, t[1], t[2]);
         return Tensors{residual};
       }});

  // ---- softmax -----------------------------------------------------------------------------
  for (const auto& [s, dim] : std::vector<std::pair<Shape, int64_t>>{{{5, 77}, 1}, {{6, 5000}, 1}, {{3, 1000, 4}, 1},
                                                                      {{2, 3, 4}, 0}, {{1}, 0}, {{4, 1, 9}, 2}}) {
    add({.op = "softmax", .shape = str(s) + " dim " + std::to_string(dim), .make = [s](Inputs& in) { return Tensors{in.rand(s, -8, 8)}; },
         .call = [dim](const Tensors& t) { return Tensors{ops::softmax(t[0], dim)}; }});
  }

  // ---- attention -----------------------------------------------------------------------------
  struct Att {
    int64_t b, h, sq, sk, d, dv, hkv = 0;
    int64_t kv() const { return hkv > 0 ? hkv : h; }
    std::string str() const {
      return detail::concat("B", b, " H", h, hkv ? " Hkv" + std::to_string(hkv) : "", " Sq", sq, " Sk", sk, " D", d, " Dv", dv);
    }
  };
  // Queries in [-4, 4] make the softmax peaked, so a wrong key or scale shows.
  const auto att_make = [](Att a, int mask_kind) {
    return [a, mask_kind](Inputs& in) {
      Tensors t{in.rand({a.b, a.sq, a.h, a.d}, -4, 4), in.rand({a.b, a.sk, a.kv(), a.d}), in.rand({a.b, a.sk, a.kv(), a.dv})};
      if (mask_kind == 1) t.push_back(in.bool_mask({a.b, 1, a.sq, a.sk}, 0.7f, 5));     // bool, a dead row
      if (mask_kind == 2) t.push_back(in.rand_as(kF32, {a.sq, a.sk}, -3, 0));           // additive float
      if (mask_kind == 3) t.push_back(in.bool_mask({a.b, 1, 1, a.sk}, 0.8f));          // key mask
      if (mask_kind == 4) {                                                             // −10000 text bias
        Tensor bias = Tensor::zeros({a.b, 1, 1, a.sk}, kF32);
        for (int64_t j = a.sk * 3 / 4; j < a.sk; ++j) bias.data<float>()[j] = -10000.0f;  // item 0 pads its tail
        t.push_back(bias);
      }
      if (mask_kind == 5) {  // per-item valid key lengths (varlen), the last item with none
        Tensor keep = Tensor::empty({a.b, 1, 1, a.sk}, DType::Bool);
        for (int64_t b = 0; b < a.b; ++b) {
          const int64_t valid = b + 1 == a.b && a.b > 1 ? 0 : a.sk - (b * 7 + 3) % a.sk;
          for (int64_t j = 0; j < a.sk; ++j) keep.data<bool>()[b * a.sk + j] = j < valid;
        }
        t.push_back(keep);
      }
      if (mask_kind == 6) t.push_back(in.bool_mask({1, a.sk}, 0.9f));                 // one key mask for all
      if (mask_kind == 7) {  // a NaN bias on one key of item 0: its rows are NaN, the others not
        Tensor bias = Tensor::zeros({a.b, 1, 1, a.sk}, kF32);
        bias.data<float>()[a.sk / 2] = std::nanf("");
        for (int64_t j = 0; j + 1 < a.sk && a.b > 1; j += 3) bias.data<float>()[a.sk + j] = -INFINITY;
        t.push_back(bias);
      }
      return t;
    };
  };
  const auto att_call = [](float scale_factor) {
    return [scale_factor](const Tensors& t) {
      const float scale = scale_factor / std::sqrt(static_cast<float>(t[0].size(3)));
      return Tensors{ops::attention(t[0], t[1], t[2], t.size() > 3 ? t[3] : Tensor{}, scale)};
    };
  };
  const auto add_att = [&](Att a, std::vector<DType> dtypes, const char* backend, int mask_kind = 0, float scale = 1.0f,
                           double bound_half = 1e-2) {
    static const char* kMaskNames[] = {"", " bool mask", " float mask", " key mask", " -10000 key bias",
                                       " key lengths (last item none)", " shared key mask", " NaN key bias"};
    add({.op = "attention", .shape = a.str() + kMaskNames[mask_kind] + (scale != 1.0f ? " scale x" + std::to_string(scale) : ""),
         .dtypes = std::move(dtypes), .make = att_make(a, mask_kind), .call = att_call(scale), .bound_half = bound_half,
         .attention_backend = backend});
  };
  std::vector<Att> basic;
  for (int64_t d : {64, 72, 128}) {
    for (const auto& [sq, sk] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {37, 37}, {333, 333}, {37, 100}}) basic.push_back({2, 3, sq, sk, d, d});
  }
  for (const Att& a : basic) {
    add_att(a, kAllFloat, "");  // the backend the dispatch picks
    add_att(a, kHalfOnly, "cudnn");
    add_att(a, kHalfOnly, "flash");
    add_att(a, kAllFloat, "reference");
  }
  for (const Att& a : {Att{1, 2, 70, 65, 8, 8}, Att{1, 2, 129, 200, 256, 256}, Att{2, 2, 50, 80, 64, 128}, Att{1, 1, 64, 64, 192, 40}})
    add_att(a, kHalfOnly, "flash");
  // The Hopper kernel's shapes: lengths off its 128-row tiles, exact multiples, one key,
  // cross-attention to 512 keys, many key tiles, batch > 1.
  for (int64_t d : {64, 128}) {
    for (const Att& a : {Att{2, 3, 1000, 1000, d, d}, Att{1, 4, 777, 512, d, d}, Att{2, 2, 300, 512, d, d}, Att{1, 2, 256, 384, d, d},
                         Att{1, 3, 129, 1, d, d}, Att{1, 2, 130, 129, d, d}, Att{1, 1, 5, 1700, d, d}}) {
      add_att(a, kHalfOnly, "flash");
    }
    add_att({2, 2, 200, 333, d, d}, {kBF16}, "flash", 0, -1.0f);  // a scale <= 0: the generic kernel
  }
  add_att({1, 2, 9, 300, 20, 36}, kAllFloat, "reference");
  // Grouped K/V heads: Stable Audio's cross-attention, factors 4 and 8, tile edges.
  for (const Att& a : {Att{2, 24, 1025, 130, 64, 64, 12}, Att{1, 8, 37, 100, 64, 64, 2}, Att{2, 4, 70, 65, 8, 8, 1},
                       Att{1, 8, 129, 200, 128, 128, 4}}) {
    add_att(a, kHalfOnly, "");
    add_att(a, kHalfOnly, "flash");
    add_att(a, kHalfOnly, "reference");
  }
  add_att({1, 8, 37, 100, 64, 64, 2}, {kF32}, "reference");
  add_att({2, 24, 1025, 130, 64, 64, 12}, {kBF16}, "", 3);
  // Masks: boolean (with a query row that sees no key: zeros), additive float, key masks,
  // LTX-2's −10000 text bias.
  for (int kind : {1, 2, 3, 4, 5, 6}) add_att({2, 3, 37, 100, 64, 64}, kAllFloat, "", kind);
  // Key masks inside the flash kernels: the generic one (head dims 64, 72, 256, grouped) and
  // the Hopper one (64 and 128: tile edges, many tiles, an item with no key, grouped heads).
  for (int kind : {3, 4, 5, 6}) {
    for (const Att& a : {Att{2, 3, 37, 100, 64, 64}, Att{2, 3, 70, 65, 72, 72}, Att{2, 2, 50, 80, 256, 256},
                         Att{2, 8, 129, 200, 64, 64, 2}, Att{2, 4, 777, 512, 128, 128}, Att{2, 2, 300, 333, 128, 128},
                         Att{3, 2, 200, 1025, 64, 64}, Att{2, 8, 300, 130, 128, 128, 4}}) {
      add_att(a, kHalfOnly, "flash", kind);
    }
  }
  add_att({2, 2, 200, 333, 128, 128}, {kBF16}, "flash", 4, -1.0f);  // masked, a scale <= 0
  // NaN in the bias propagates (its tile is flagged), on both flash kernels.
  for (const Att& a : {Att{2, 3, 70, 300, 72, 72}, Att{2, 2, 150, 333, 128, 128}}) add_att(a, kHalfOnly, "flash", 7);
  // The query split (LongCat's condition tokens: the first N queries see the first N keys
  // only, the rest see all), as nn::DistributedAttention runs it: two calls on views of q, k
  // and v, on the flash kernels.
  for (const auto& [a, n] : std::vector<std::pair<Att, int64_t>>{{Att{2, 3, 300, 300, 128, 128}, 130}, {Att{1, 2, 200, 200, 64, 64}, 37}}) {
    add({.op = "attention", .shape = a.str() + " query split " + std::to_string(n), .dtypes = kHalfOnly, .make = att_make(a, 0),
         .call = [n](const Tensors& t) {
           const Tensor first = ops::attention(t[0].narrow(1, 0, n), t[1].narrow(1, 0, n), t[2].narrow(1, 0, n));
           const Tensor rest = ops::attention(t[0].narrow(1, n, t[0].size(1) - n), t[1], t[2]);
           const Tensor parts[] = {first, rest};
           return Tensors{ops::concat(parts, 1)};
         },
         .attention_backend = "flash"});
  }
  // Grouped heads on the Hopper kernel, unmasked.
  for (const Att& a : {Att{1, 8, 1000, 1000, 128, 128, 2}, Att{2, 12, 300, 512, 64, 64, 4}}) add_att(a, kHalfOnly, "flash");

  // ---- rotary embedding ----------------------------------------------------------------------
  for (const auto& [s, rotary] : std::vector<std::pair<Shape, int64_t>>{{{2, 37, 3, 64}, 64}, {{1, 5, 2, 10}, 10},
                                                                         {{2, 1025, 24, 64}, 32}, {{1, 7, 3, 10}, 4}}) {
    for (RopeStyle style : {RopeStyle::Interleaved, RopeStyle::SplitHalf}) {
      add({.op = "rope", .shape = str(s) + " table " + std::to_string(rotary) + (style == RopeStyle::Interleaved ? " interleaved" : " split-half"),
           .make = [s, rotary](Inputs& in) {
             return Tensors{in.rand(s), in.rand_as(kF32, {s[1], rotary}), in.rand_as(kF32, {s[1], rotary})};
           },
           .call = [style](const Tensors& t) { return Tensors{ops::rope(t[0], t[1], t[2], style)}; }});
    }
  }
  // Per-head tables [S, H, R] (LTX-2's split RoPE: each head its own frequencies) and
  // per-item tables [B, S, 1, R] (coordinates given per batch item).
  for (RopeStyle style : {RopeStyle::Interleaved, RopeStyle::SplitHalf}) {
    const char* name = style == RopeStyle::Interleaved ? " interleaved" : " split-half";
    add({.op = "rope", .shape = std::string("[2, 37, 4, 64] table [37, 4, 64]") + name,
         .make = [](Inputs& in) {
           return Tensors{in.rand({2, 37, 4, 64}), in.rand_as(kF32, {37, 4, 64}), in.rand_as(kF32, {37, 4, 64})};
         },
         .call = [style](const Tensors& t) { return Tensors{ops::rope(t[0], t[1], t[2], style)}; }});
    add({.op = "rope", .shape = std::string("[2, 37, 4, 64] table [2, 37, 1, 32]") + name,
         .make = [](Inputs& in) {
           return Tensors{in.rand({2, 37, 4, 64}), in.rand_as(kF32, {2, 37, 1, 32}), in.rand_as(kF32, {2, 37, 1, 32})};
         },
         .call = [style](const Tensors& t) { return Tensors{ops::rope(t[0], t[1], t[2], style)}; }});
  }
  struct Qkv {
    int64_t heads, head_dim;
    RopeStyle style;
  };
  // The vectorised kernel serves interleaved pairs with head dims of whole 16-byte runs (40 x
  // 128: Wan 14B's ragged last run); the others take the per-row kernel.
  for (const Qkv& c : {Qkv{12, 128, RopeStyle::Interleaved}, Qkv{40, 128, RopeStyle::Interleaved}, Qkv{2, 48, RopeStyle::Interleaved},
                       Qkv{2, 20, RopeStyle::Interleaved}, Qkv{3, 16, RopeStyle::SplitHalf}}) {
    const int64_t d = c.heads * c.head_dim, seq = 37;
    add({.op = "qkv_norm_rope",
         .shape = detail::concat("[2,", seq, ",3x", d, "] heads ", c.heads, c.style == RopeStyle::Interleaved ? " interleaved" : " split-half"),
         .make = [=](Inputs& in) {
           return Tensors{in.rand({2, seq, 3 * d}, -2, 2), in.rand({d}, 0.5f, 1.5f), in.rand({d}, 0.5f, 1.5f),
                          in.rand_as(kF32, {seq, c.head_dim}), in.rand_as(kF32, {seq, c.head_dim})};
         },
         .call = [c](const Tensors& t) {
           const ops::QKV r = ops::qkv_norm_rope(t[0], t[1], t[2], 1e-6f, c.heads, t[3], t[4], c.style);
           return Tensors{r.q, r.k, r.v};
         }});
  }

  // Per-(item, token, head) tables [B or 1, S, H, dh] (LTX-2's per-head frequency slices) in
  // every kernel: split-half at dh 128 and 64 (LTX-2's video and audio heads) and 16 in the
  // split-half vectorised one, interleaved 128 in the interleaved one, 20 in the per-row one.
  struct HeadTable {
    int64_t heads, head_dim, table_batch;
    RopeStyle style;
  };
  for (const HeadTable& c : {HeadTable{4, 128, 1, RopeStyle::SplitHalf}, HeadTable{3, 64, 2, RopeStyle::SplitHalf},
                             HeadTable{3, 16, 2, RopeStyle::SplitHalf}, HeadTable{2, 128, 2, RopeStyle::Interleaved},
                             HeadTable{2, 20, 1, RopeStyle::SplitHalf}}) {
    const int64_t d = c.heads * c.head_dim, seq = 37;
    const Shape table{c.table_batch, seq, c.heads, c.head_dim};
    add({.op = "qkv_norm_rope",
         .shape = detail::concat("[2,", seq, ",3x", d, "] heads ", c.heads, " table ", str(table),
                                 c.style == RopeStyle::Interleaved ? " interleaved" : " split-half"),
         .make = [=](Inputs& in) {
           return Tensors{in.rand({2, seq, 3 * d}, -2, 2), in.rand({d}, 0.5f, 1.5f), in.rand({d}, 0.5f, 1.5f),
                          in.rand_as(kF32, table), in.rand_as(kF32, table)};
         },
         .call = [c](const Tensors& t) {
           const ops::QKV r = ops::qkv_norm_rope(t[0], t[1], t[2], 1e-6f, c.heads, t[3], t[4], c.style);
           return Tensors{r.q, r.k, r.v};
         }});
  }

  // Per-head norms (weights [dh] of qkv's dtype, rounded before them): the team kernel serves
  // interleaved pairs at dh of whole runs up to a warp (128, 64); 20 and split-half compose.
  for (const Qkv& c : {Qkv{4, 128, RopeStyle::Interleaved}, Qkv{3, 64, RopeStyle::Interleaved},
                       Qkv{2, 20, RopeStyle::Interleaved}, Qkv{3, 16, RopeStyle::SplitHalf}}) {
    const int64_t d = c.heads * c.head_dim, seq = 37;
    add({.op = "qkv_norm_rope",
         .shape = detail::concat("[2,", seq, ",3x", d, "] per head ", c.head_dim, c.style == RopeStyle::Interleaved ? " interleaved" : " split-half"),
         .make = [=](Inputs& in) {
           return Tensors{in.rand({2, seq, 3 * d}, -2, 2), in.rand({c.head_dim}, 0.5f, 1.5f), in.rand({c.head_dim}, 0.5f, 1.5f),
                          in.rand_as(kF32, {seq, c.head_dim}), in.rand_as(kF32, {seq, c.head_dim})};
         },
         .call = [c](const Tensors& t) {
           const ops::QKV r = ops::qkv_norm_rope(t[0], t[1], t[2], 1e-6f, c.heads, t[3], t[4], c.style, ops::QkNorm::PerHead);
           return Tensors{r.q, r.k, r.v};
         }});
  }
  // Per-head norms rounded once after a float32 weight (torch.nn.RMSNorm: Flux), from the
  // q|k|v columns of a wider projection (Flux's single blocks: q|k|v|mlp), read in place.
  for (const Qkv& c : {Qkv{4, 128, RopeStyle::Interleaved}, Qkv{2, 20, RopeStyle::Interleaved}}) {
    const int64_t d = c.heads * c.head_dim, seq = 37;
    for (const int64_t extra : {int64_t{0}, 4 * d}) {
      add({.op = "qkv_norm_rope",
           .shape = detail::concat("[2,", seq, ",3x", d, extra ? "] of a wider row" : "]", " per head once ", c.head_dim),
           .make = [=](Inputs& in) {
             return Tensors{in.rand({2, seq, 3 * d + extra}, -2, 2), in.rand_as(kF32, {c.head_dim}, 0.5f, 1.5f),
                            in.rand_as(kF32, {c.head_dim}, 0.5f, 1.5f), in.rand_as(kF32, {seq, c.head_dim}),
                            in.rand_as(kF32, {seq, c.head_dim})};
           },
           .call = [c, d](const Tensors& t) {
             const ops::QKV r = ops::qkv_norm_rope(t[0].narrow(-1, 0, 3 * d), t[1], t[2], 1e-6f, c.heads, t[3], t[4],
                                                   c.style, ops::QkNorm::PerHeadOnce);
             return Tensors{r.q, r.k, r.v};
           }});
    }
  }

  // ---- layout and casts (bit-identical) ------------------------------------------------------
  const std::vector<DType> kLayoutTypes = {kF32, kBF16, kF16, DType::Int64};
  const auto rand_any = [](Inputs& in, const Shape& s) {
    if (in.dtype != DType::Int64) return in.rand(s);
    std::vector<int64_t> v;
    for (float x : testing::random_tensor(s, in.seed++, -1e6f, 1e6f).to_float_vector()) v.push_back(static_cast<int64_t>(x) << 20);
    return Tensor::from_vector(v, s);
  };
  for (const auto& [s, dims] : std::vector<std::pair<Shape, std::vector<int64_t>>>{
           {{3, 4, 5, 6}, {2, 0, 3, 1}}, {{2, 3, 2, 3, 2, 3, 2, 3}, {7, 6, 5, 4, 3, 2, 1, 0}}, {{3, 40, 2, 5, 64}, {2, 0, 1, 3, 4}},
           {{3, 40, 2, 5, 36}, {2, 0, 1, 3, 4}}, {{2, 3}, {0, 1}}}) {
    add({.op = "permute", .shape = str(s) + " by " + str(Shape(dims.begin(), dims.end())), .dtypes = kLayoutTypes,
         .make = [=](Inputs& in) { return Tensors{rand_any(in, s)}; },
         .call = [dims](const Tensors& t) { return Tensors{ops::permute(t[0], dims)}; }, .exact = true});
  }
  // Row-preserving permutes of a narrowed view (whole 16-byte rows move as vectors, others
  // element-wise), and tiled transposes of sizes off the 32x32 tile.
  add({.op = "permute", .shape = "[3,40,2,5,64] narrowed by one row of 5", .dtypes = kLayoutTypes,
       .make = [=](Inputs& in) { return Tensors{rand_any(in, {3, 40, 2, 5, 64})}; },
       .call = [](const Tensors& t) {
         const int64_t dims[] = {2, 0, 1, 3, 4};
         return Tensors{ops::permute(t[0].narrow(3, 1, 4), dims), ops::permute(t[0].narrow(4, 1, 63), dims)};
       }, .exact = true});
  for (const Shape& s : {Shape{45, 70}, Shape{3, 70, 45}, Shape{1, 1536, 1000}}) {
    add({.op = "transpose", .shape = str(s) + " last two", .dtypes = kLayoutTypes, .make = [=](Inputs& in) { return Tensors{rand_any(in, s)}; },
         .call = [](const Tensors& t) { return Tensors{ops::transpose(t[0], t[0].dim() - 2, t[0].dim() - 1)}; }, .exact = true});
  }
  for (int64_t dim = 0; dim < 3; ++dim) {
    add({.op = "concat", .shape = "three of [2,3,4] sized 3,5,1 along " + std::to_string(dim), .dtypes = kLayoutTypes,
         .make = [=](Inputs& in) {
           Tensors t;
           for (int64_t size : {3, 5, 1}) {
             Shape s{2, 3, 4};
             s[dim] = size;
             t.push_back(rand_any(in, s));
           }
           return t;
         },
         .call = [dim](const Tensors& t) { return Tensors{ops::concat(t, dim)}; }, .exact = true});
    add({.op = "split", .shape = "[4,9,6] into 2,3,4 along " + std::to_string(dim) + " (dim 0: 1,1,2)", .dtypes = kLayoutTypes,
         .make = [=](Inputs& in) { return Tensors{rand_any(in, {4, 9, 6})}; },
         .call = [dim](const Tensors& t) {
           const std::vector<int64_t> sizes = dim == 0 ? std::vector<int64_t>{1, 1, 2} : dim == 1 ? std::vector<int64_t>{2, 3, 4} : std::vector<int64_t>{1, 2, 3};
           return ops::split(t[0], sizes, dim);
         }, .exact = true});
  }
  // Casts round to nearest even like the CPU, specials included.
  for (DType to : {kF32, kBF16, kF16}) {
    add({.op = "cast", .shape = std::string("to ") + dtype_name(to) + ", specials and [-100, 100)", .dtypes = {kF32, kBF16, kF16},
         .make = [](Inputs& in) {
           std::vector<float> v = {0.0f, -0.0f, 1.0f, 1.00390625f, 1.01171875f, 65504.0f, 65520.0f, 1e-8f, -3.0e-39f, 1e30f,
                                   INFINITY, -INFINITY, NAN};
           for (float x : testing::random_tensor({1000}, in.seed++, -100, 100).to_float_vector()) v.push_back(x);
           return Tensors{Tensor::from_vector(v, {static_cast<int64_t>(v.size())}).to(in.dtype)};
         },
         .call = [to](const Tensors& t) { return Tensors{ops::cast(t[0], to), ops::cast(t[0].narrow(0, 1, t[0].size(0) - 1), to)}; },
         .exact = true});
  }
  add({.op = "cast", .shape = "int64 -> float32, strided", .dtypes = {DType::Int64},
       .make = [](Inputs&) { return Tensors{Tensor::from_vector<int64_t>({1, -2, 3, 1LL << 40, 5, 6}, {2, 3})}; },
       .call = [](const Tensors& t) { return Tensors{ops::cast(t[0].transpose(0, 1), kF32)}; }, .exact = true});

  // ---- embeddings ----------------------------------------------------------------------------
  for (const auto& [x, w] : std::vector<std::pair<Shape, Shape>>{{{2, 3, 4, 6, 8}, {5, 3, 2, 2, 2}}, {{1, 16, 1, 8, 8}, {32, 16, 1, 2, 2}}}) {
    for (bool bias : {true, false}) {
      add({.op = "conv3d_patch", .shape = str(x) + " by " + str(w) + (bias ? " +bias" : ""),
           .make = [=](Inputs& in) { return Tensors{in.rand(x), in.rand(w), bias ? in.rand({w[0]}) : Tensor{}}; },
           .call = [](const Tensors& t) { return Tensors{ops::conv3d_patch(t[0], t[1], t[2])}; }});
    }
  }
  for (int64_t dim : {256, 33, 1}) {
    for (bool flip : {false, true}) {
      for (float shift : {0.0f, 1.0f}) {
        add({.op = "timestep_embedding", .shape = detail::concat("dim ", dim, flip ? " cos|sin" : " sin|cos", " shift ", shift),
             .dtypes = {kF32},
             .make = [](Inputs&) {
               return Tensors{Tensor::from_vector<float>({0.0f, 1.0f, 250.5f, 999.0f, 17.25f}, {5}),
                              Tensor::from_vector<int64_t>({0, 3, 999}, {3})};
             },
             .call = [=](const Tensors& t) {
               return Tensors{ops::timestep_embedding(t[0], dim, flip, shift), ops::timestep_embedding(t[1], dim, flip, shift, 1000.0f)};
             }});
      }
    }
  }

  // ---- perf cases (--perf; DiT-sized, bfloat16, CUDA only) -----------------------------------
  struct PerfAtt {
    const char* name;
    int64_t b, h, s, d, keys;
  };
  for (const PerfAtt& p : {PerfAtt{"Flux 1024^2", 1, 24, 4608, 128, 0}, PerfAtt{"SD3.5-L 1024^2", 1, 38, 4429, 64, 0},
                           PerfAtt{"DiT-XL 512^2", 8, 16, 1024, 72, 0}, PerfAtt{"Wan 480p/4", 1, 40, 8190, 128, 0},
                           PerfAtt{"Wan 1.3B 480p", 1, 12, 32760, 128, 0}, PerfAtt{"Wan 14B 480p", 1, 40, 32760, 128, 0},
                           PerfAtt{"Wan 1.3B text", 1, 12, 32760, 128, 512}, PerfAtt{"Wan 14B text", 1, 40, 32760, 128, 512}}) {
    for (const char* backend : {"cudnn", "flash"}) {
      const int64_t keys = p.keys ? p.keys : p.s;
      add({.op = "attention", .shape = detail::concat(p.name, " [", p.b, ",", p.h, ",", p.s, ",", p.d, "] keys ", keys), .dtypes = {kBF16},
           .make = [=](Inputs& in) {
             return Tensors{in.rand({p.b, p.s, p.h, p.d}), in.rand({p.b, keys, p.h, p.d}), in.rand({p.b, keys, p.h, p.d})};
           },
           .call = att_call(1.0f), .attention_backend = backend, .perf = true, .check = false});
    }
  }
  // The same kernel with a key mask, grouped heads, or both: the cost of each against the
  // unmasked line above (Wan 1.3B-sized self-attention, and cross-attention to 512 text keys
  // with a −10000 padding bias as LTX-2 and LongCat pad their text).
  for (const char* name : {"Wan 1.3B 480p", "Wan 1.3B text"}) {
    const bool text = std::string(name).find("text") != std::string::npos;
    const int64_t keys = text ? 512 : 32760;
    for (int variant : {1, 2, 3}) {  // 1: key mask, 2: grouped heads (12 over 3), 3: both
      const int64_t kv_heads = variant >= 2 ? 3 : 12;
      add({.op = "attention",
           .shape = detail::concat(name, " [1,12,32760,128] keys ", keys, variant == 1 ? " key mask" : variant == 2 ? " Hkv 3" : " Hkv 3 key mask"),
           .dtypes = {kBF16},
           .make = [=](Inputs& in) {
             Tensors t{in.rand({1, 32760, 12, 128}), in.rand({1, keys, kv_heads, 128}), in.rand({1, keys, kv_heads, 128})};
             if (variant != 2) {
               Tensor bias = Tensor::zeros({1, 1, 1, keys}, kF32);
               for (int64_t j = keys * 9 / 10; j < keys; ++j) bias.data<float>()[j] = -10000.0f;
               t.push_back(bias);
             }
             return t;
           },
           .call = att_call(1.0f), .attention_backend = "flash", .perf = true, .check = false});
    }
  }
  // Varlen (per-item key lengths as a boolean key mask: item 0 all 32760 keys, item 1 the
  // first 24570) and the query split (the first 1560 queries, one latent frame of Wan 480p,
  // see the first 1560 keys; the other 31200 all keys: two calls on views, timed without the
  // concat), beside the unmasked [1,12,32760,128] line. Their TFLOP/s count every key of the
  // calls made (masked keys included).
  add({.op = "attention", .shape = "Wan 1.3B 480p [2,12,32760,128] varlen keys 32760|24570", .dtypes = {kBF16},
       .make = [](Inputs& in) {
         Tensors t{in.rand({2, 32760, 12, 128}), in.rand({2, 32760, 12, 128}), in.rand({2, 32760, 12, 128})};
         Tensor keep = Tensor::empty({2, 1, 1, 32760}, DType::Bool);
         for (int64_t j = 0; j < 2 * 32760; ++j) keep.data<bool>()[j] = j < 32760 || j - 32760 < 24570;
         t.push_back(keep);
         return t;
       },
       .call = att_call(1.0f), .attention_backend = "flash", .perf = true, .check = false});
  add({.op = "attention", .shape = "Wan 1.3B 480p [1,12,32760,128] query split 1560", .dtypes = {kBF16},
       .make = [](Inputs& in) {
         return Tensors{in.rand({1, 32760, 12, 128}), in.rand({1, 32760, 12, 128}), in.rand({1, 32760, 12, 128})};
       },
       .call = [](const Tensors& t) {
         const int64_t n = 1560;
         return Tensors{ops::attention(t[0].narrow(1, 0, n), t[1].narrow(1, 0, n), t[2].narrow(1, 0, n)),
                        ops::attention(t[0].narrow(1, n, t[0].size(1) - n), t[1], t[2])};
       },
       .attention_backend = "flash", .perf = true, .check = false});
  struct PerfGemm {
    const char* name;
    int64_t tokens, in, out;
  };
  for (const PerfGemm& g : {PerfGemm{"Flux MLP up", 4608, 3072, 12288}, PerfGemm{"Flux MLP down", 4608, 12288, 3072},
                            PerfGemm{"Wan FFN up", 32760, 1536, 8960}, PerfGemm{"Wan FFN up/2", 16380, 1536, 8960},
                            PerfGemm{"Wan FFN down", 32760, 8960, 1536}, PerfGemm{"Wan FFN down/2", 16380, 8960, 1536}}) {
    const auto make = [g](Inputs& in) { return Tensors{in.rand({g.tokens, g.in}), in.rand({g.out, g.in}), in.rand({g.out})}; };
    add({.op = "linear", .shape = std::string(g.name) + " +bias", .dtypes = {kBF16}, .make = make,
         .call = [](const Tensors& t) { return Tensors{ops::linear(t[0], t[1], t[2])}; }, .perf = true, .check = false});
    add({.op = "linear_gelu", .shape = std::string(g.name) + " +bias +gelu_tanh", .dtypes = {kBF16}, .make = make,
         .call = [](const Tensors& t) { return Tensors{ops::linear_gelu(t[0], t[1], t[2], GeluApprox::Tanh)}; }, .perf = true,
         .check = false});
  }
  // The memory-bound kernels of a DiT block at Wan's shapes (32,760 tokens).
  for (int64_t dim : {1536, 5120}) {
    const Shape s{1, 32760, dim};
    const std::string at = detail::concat(" D=", dim, " 32760 rows");
    const auto x2 = [s](Inputs& in) { return Tensors{in.rand(s), in.rand(s)}; };
    const auto x_mod = [s, dim](Inputs& in) { return Tensors{in.rand(s), in.rand_as(kF32, {1, 1, dim}), in.rand_as(kF32, {1, 1, dim})}; };
    add({.op = "layer_norm_modulate", .shape = at, .dtypes = {kBF16}, .make = x_mod,
         .call = [](const Tensors& t) { return Tensors{ops::layer_norm_modulate(t[0], t[1], t[2], 1e-6f, kBF16)}; }, .perf = true, .check = false});
    add({.op = "layer_norm", .shape = at + " affine", .dtypes = {kBF16}, .make = x_mod,
         .call = [](const Tensors& t) { return Tensors{ops::layer_norm(t[0], t[1].reshape({-1}), t[2].reshape({-1}), 1e-6f)}; },
         .perf = true, .check = false});
    add({.op = "rms_norm", .shape = at, .dtypes = {kBF16}, .make = [s, dim](Inputs& in) { return Tensors{in.rand(s), in.rand({dim})}; },
         .call = [](const Tensors& t) { return Tensors{ops::rms_norm(t[0], t[1], 1e-6f)}; }, .perf = true, .check = false});
    add({.op = "gated_add", .shape = at + " f32 gate", .dtypes = {kBF16},
         .make = [s, dim](Inputs& in) { return Tensors{in.rand(s), in.rand(s), in.rand_as(kF32, {1, 1, dim})}; },
         .call = [](const Tensors& t) { return Tensors{ops::gated_add(t[0], t[1], t[2], kBF16)}; }, .perf = true, .check = false});
    add({.op = "add", .shape = at, .dtypes = {kBF16}, .make = x2, .call = [](const Tensors& t) { return Tensors{ops::add(t[0], t[1])}; },
         .perf = true, .check = false});
    add({.op = "add_layer_norm", .shape = at + " gated, affine", .dtypes = {kBF16},
         .make = [s, dim](Inputs& in) {
           return Tensors{in.rand(s), in.rand(s), in.rand_as(kF32, {1, 1, dim}), in.rand_as(kF32, {dim}), in.rand_as(kF32, {dim})};
         },
         .call = [](const Tensors& t) {
           const ops::AddNorm r = ops::add_layer_norm(t[0], t[1], t[2], t[3], t[4], {}, {}, 1e-6f);
           return Tensors{r.sum, r.normed};
         }, .perf = true, .check = false});
    add({.op = "qkv_norm_rope", .shape = at, .dtypes = {kBF16},
         .make = [dim](Inputs& in) {
           return Tensors{in.rand({1, 32760, 3 * dim}), in.rand({dim}), in.rand_as(kF32, {32760, 128}), in.rand_as(kF32, {32760, 128})};
         },
         .call = [dim](const Tensors& t) {
           const ops::QKV r = ops::qkv_norm_rope(t[0], t[1], t[1], 1e-6f, dim / 128, t[2], t[3], RopeStyle::Interleaved);
           return Tensors{r.q, r.k, r.v};
         }, .perf = true, .check = false});
    add({.op = "qkv_norm_rope", .shape = at + " per head", .dtypes = {kBF16},
         .make = [dim](Inputs& in) {
           return Tensors{in.rand({1, 32760, 3 * dim}), in.rand({128}), in.rand_as(kF32, {32760, 128}), in.rand_as(kF32, {32760, 128})};
         },
         .call = [dim](const Tensors& t) {
           const ops::QKV r = ops::qkv_norm_rope(t[0], t[1], t[1], 1e-6f, dim / 128, t[2], t[3], RopeStyle::Interleaved,
                                                 ops::QkNorm::PerHead);
           return Tensors{r.q, r.k, r.v};
         }, .perf = true, .check = false});
    if (dim == 5120) {  // LTX-2 19B's video self-attention: 6,144 tokens, split-half, per-head table
      add({.op = "qkv_norm_rope", .shape = " LTX-2 video [1,6144,3x4096] table [1,6144,32,128] split-half",
           .dtypes = {kBF16},
           .make = [](Inputs& in) {
             return Tensors{in.rand({1, 6144, 3 * 4096}), in.rand({4096}), in.rand_as(kF32, {1, 6144, 32, 128}),
                            in.rand_as(kF32, {1, 6144, 32, 128})};
           },
           .call = [](const Tensors& t) {
             const ops::QKV r = ops::qkv_norm_rope(t[0], t[1], t[1], 1e-6f, 32, t[2], t[3], RopeStyle::SplitHalf);
             return Tensors{r.q, r.k, r.v};
           }, .perf = true, .check = false});
      // The same as separate ops: each of q and k normalised in place and rotated, v copied.
      add({.op = "rms_norm", .shape = " LTX-2 video q|k|v [1,6144,3x4096]: norm, rope of q and k, v copied",
           .dtypes = {kBF16},
           .make = [](Inputs& in) {
             return Tensors{in.rand({1, 6144, 3 * 4096}), in.rand({4096}), in.rand_as(kF32, {1, 6144, 32, 128}),
                            in.rand_as(kF32, {1, 6144, 32, 128})};
           },
           .call = [](const Tensors& t) {
             const auto part = [&](int64_t i) {
               return ops::rope(ops::rms_norm(t[0].narrow(-1, i * 4096, 4096), t[1], 1e-6f).reshape({1, 6144, 32, 128}),
                                t[2], t[3], RopeStyle::SplitHalf);
             };
             return Tensors{part(0), part(1), t[0].narrow(-1, 2 * 4096, 4096).contiguous()};
           }, .perf = true, .check = false});
    }
    add({.op = "transpose", .shape = detail::concat(" [1,", dim, ",32760] -> [1,32760,", dim, "] (patchify)"), .dtypes = {kBF16},
         .make = [dim](Inputs& in) { return Tensors{in.rand({1, dim, 32760})}; },
         .call = [](const Tensors& t) { return Tensors{ops::transpose(t[0], 1, 2)}; }, .perf = true, .check = false});
  }
  return cases;
}

// ---- running and comparing -----------------------------------------------------------------

struct Metric {
  double rel_l2 = 0, max_abs = 0;
  std::string problem;  // non-empty: a failure regardless of the bound
};

Metric compare(const Tensors& got, const Tensors& want, bool exact) {
  Metric m;
  if (got.size() != want.size()) {
    m.problem = detail::concat(got.size(), " outputs, the CPU gives ", want.size());
    return m;
  }
  double num = 0, den = 0;
  for (size_t o = 0; o < got.size(); ++o) {
    if (got[o].defined() != want[o].defined()) {
      m.problem = detail::concat("output ", o, " defined on one backend only");
      return m;
    }
    if (!got[o].defined()) continue;
    if (got[o].shape() != want[o].shape() || got[o].dtype() != want[o].dtype()) {
      m.problem = detail::concat("output ", o, " is ", got[o].str(), ", the CPU gives ", want[o].str());
      return m;
    }
    if (got[o].dtype() == DType::Int64 || got[o].dtype() == DType::Bool || got[o].dtype() == DType::UInt8) {
      const Tensor a = got[o].to(Device::cpu()).contiguous(), b = want[o].contiguous();
      if (std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) != 0) m.problem = detail::concat("output ", o, " differs");
      continue;
    }
    const std::vector<float> a = got[o].to(Device::cpu()).to_float_vector(), b = want[o].to_float_vector();
    for (size_t i = 0; i < a.size(); ++i) {
      if (!std::isfinite(b[i]) || !std::isfinite(a[i])) {
        const bool same = (std::isnan(a[i]) && std::isnan(b[i])) || a[i] == b[i];
        if (!same) {
          m.problem = detail::concat("output ", o, " element ", i, " is ", a[i], ", the CPU gives ", b[i]);
          return m;
        }
        continue;
      }
      const double d = std::fabs(double(a[i]) - b[i]);
      if (exact && d != 0) {
        m.problem = detail::concat("output ", o, " element ", i, " is ", a[i], ", the CPU gives ", b[i], " (must be identical)");
        return m;
      }
      m.max_abs = std::max(m.max_abs, d);
      num += d * d;
      den += double(b[i]) * b[i];
    }
  }
  m.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return m;
}

Tensors to_device(const Tensors& t, Device device) {
  Tensors out;
  for (const Tensor& x : t) out.push_back(x.defined() ? x.to(device) : x);
  return out;
}

// A case's seed from its label (op, shape, dtype: FNV-1a), so adding a case moves no other
// case's inputs.
uint64_t case_seed(const std::string& label) {
  uint64_t h = 14695981039346656037ull;
  for (const unsigned char c : label) h = (h ^ c) * 1099511628211ull;
  return h;
}

class ScopedBackend {
 public:
  explicit ScopedBackend(const char* name) {
    if (const char* old = std::getenv("FASTDIT_ATTENTION_BACKEND")) old_ = old, had_ = true;
    if (*name) {
      ::setenv("FASTDIT_ATTENTION_BACKEND", name, 1);
    } else {
      ::unsetenv("FASTDIT_ATTENTION_BACKEND");
    }
  }
  ~ScopedBackend() {
    if (had_) {
      ::setenv("FASTDIT_ATTENTION_BACKEND", old_.c_str(), 1);
    } else {
      ::unsetenv("FASTDIT_ATTENTION_BACKEND");
    }
  }

 private:
  std::string old_;
  bool had_ = false;
};

bool cuda_available() {
#ifdef FASTDIT_WITH_CUDA
  try {
    return cuda::device_count() > 0;
  } catch (const Error&) {
    return false;
  }
#else
  return false;
#endif
}

void sync_cuda() {
#ifdef FASTDIT_WITH_CUDA
  cuda::synchronize(0);
#endif
}

void set_poison(bool on) {
#ifdef FASTDIT_WITH_CUDA
  cuda::set_allocation_poison(on);
#else
  (void)on;
#endif
}

// The ops:: functions declared in src/ops/ops.h before its accounting section.
std::set<std::string> vocabulary() {
  const std::filesystem::path header = testing::source_path("src/ops/ops.h");
  std::ifstream in(header);
  FASTDIT_CHECK(in.good(), "cannot read ", header.string());
  std::set<std::string> names;
  const std::regex decl(R"(^(?:Tensor|void|AddNorm|QKV|Fp8Rows|std::vector<Tensor>)\s+(\w+)\()");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("accounting and test data") != std::string::npos) break;
    std::smatch m;
    if (std::regex_search(line, m, decl)) names.insert(m[1]);
  }
  FASTDIT_CHECK(names.size() > 10, header.string(), ": found only ", names.size(), " op declarations");
  return names;
}

int run_coverage(const std::vector<OpCase>& cases) {
  std::map<std::string, int> checked, timed;
  for (const OpCase& c : cases) (c.check ? checked : timed)[c.op]++;
  int missing = 0;
  for (const std::string& op : vocabulary()) {
    if (!checked.count(op)) {
      std::printf("MISSING  %s has no checked case\n", op.c_str());
      ++missing;
    } else {
      std::printf("covered  %-20s %3d cases%s\n", op.c_str(), checked[op],
                  timed.count(op) ? detail::concat(", ", timed[op], " timed").c_str() : "");
    }
  }
  for (const auto& [op, n] : checked) {
    if (!vocabulary().count(op)) {
      std::printf("UNKNOWN  case op '%s' is not declared in src/ops/ops.h\n", op.c_str());
      ++missing;
    }
  }
  std::printf("%s: %zu ops, %d without a case\n", missing ? "FAIL" : "PASS", vocabulary().size(), missing);
  return missing ? 1 : 0;
}

int run_checks(const std::vector<OpCase>& cases, const std::string& filter, bool cpu_only) {
  int failed = 0, passed = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const OpCase& c = cases[i];
    if (!c.check || (cpu_only && *c.attention_backend)) continue;  // a forced backend is CUDA's
    for (DType dtype : c.dtypes) {
      const std::string label = c.label(dtype);
      if (!filter.empty() && label.find(filter) == std::string::npos) continue;
      Inputs in{dtype, case_seed(label)};
      std::string line;
      bool ok = true;
      try {
        const Tensors inputs = c.make(in);
        const Tensors want = c.call(inputs);
        if (cpu_only) {
          // The oracle alone: it runs, and gives the same bits a second time.
          const Metric again = compare(c.call(inputs), want, true);
          ok = again.problem.empty();
          line = ok ? "repeatable" : again.problem;
        } else {
          set_poison(true);
          ScopedBackend backend(c.attention_backend);
          const Tensors got = c.call(to_device(inputs, Device::cuda(0)));
          sync_cuda();
          set_poison(false);
          const Metric m = compare(got, want, c.exact);
          // The bound of the outputs' precision: a float32 case writing bfloat16 (an op's
          // out_dtype) compares rounded values, where the last float32 bit of a sum in another
          // order flips an element by one bfloat16 ulp.
          bool half = dtype == kBF16 || dtype == kF16;
          for (const Tensor& t : got) half = half || t.dtype() == kBF16 || t.dtype() == kF16;
          const double bound = c.exact ? 0.0 : half ? c.bound_half : c.bound_f32;
          ok = m.problem.empty() && m.rel_l2 <= bound;
          line = m.problem.empty() ? detail::concat("rel_l2=", m.rel_l2, " max_abs=", m.max_abs, " bound=", bound) : m.problem;
        }
      } catch (const Error& e) {
        set_poison(false);
        ok = false;
        line = std::string("error: ") + e.what();
      }
      std::printf("%s  %-90s %s\n", ok ? "OK  " : "FAIL", label.c_str(), line.c_str());
      (ok ? passed : failed)++;
    }
  }
  std::printf("%s: %d passed, %d failed%s\n", failed ? "FAIL" : "PASS", passed, failed, cpu_only ? " (CPU only)" : " (CUDA vs CPU)");
  return failed ? 1 : 0;
}

int run_perf(const std::vector<OpCase>& cases, const std::string& filter) {
  for (size_t i = 0; i < cases.size(); ++i) {
    const OpCase& c = cases[i];
    if (!c.perf) continue;
    for (DType dtype : c.dtypes) {
      const std::string label = c.label(dtype);
      if (!filter.empty() && label.find(filter) == std::string::npos) continue;
      try {
        Inputs in{dtype, case_seed(label)};
        const Tensors inputs = to_device(c.make(in), Device::cuda(0));
        ScopedBackend backend(c.attention_backend);
        double bytes = 0;
        for (const Tensor& t : inputs) bytes += t.defined() ? static_cast<double>(t.nbytes()) : 0;
        ops::start_flop_count();
        for (const Tensor& t : c.call(inputs)) bytes += t.defined() ? static_cast<double>(t.nbytes()) : 0;
        const double flops = ops::stop_flop_count().total();
        for (int w = 0; w < 2; ++w) c.call(inputs);
        sync_cuda();
        std::vector<double> ms;
        for (int r = 0; r < 7; ++r) {
          const auto start = std::chrono::steady_clock::now();
          for (int k = 0; k < 5; ++k) c.call(inputs);
          sync_cuda();
          ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / 5);
        }
        std::nth_element(ms.begin(), ms.begin() + 3, ms.end());
        const double t = ms[3];
        std::printf("perf  %-80s %9.3f ms %7.0f GB/s", label.c_str(), t, bytes / t * 1e-6);
        if (flops > 0) std::printf(" %6.0f TFLOP/s", flops / t * 1e-9);
        std::printf("\n");
      } catch (const Error& e) {
        std::printf("perf  %-80s refused: %s\n", label.c_str(), e.what());
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace fastdit

int main(int argc, char** argv) {
  using namespace fastdit;
  std::string filter;
  bool coverage = false, perf = false, cpu_only = false, list = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--coverage") {
      coverage = true;
    } else if (a == "--perf") {
      perf = true;
    } else if (a == "--cpu-only") {
      cpu_only = true;
    } else if (a == "--list") {
      list = true;
    } else if (a == "--filter" && i + 1 < argc) {
      filter = argv[++i];
    } else {
      std::fprintf(stderr, "error: unknown argument '%s' (--coverage, --perf, --cpu-only, --list, --filter TEXT)\n", a.c_str());
      return 2;
    }
  }
  try {
    const std::vector<OpCase> cases = make_cases();
    if (list) {
      for (const OpCase& c : cases)
        for (DType d : c.dtypes) std::printf("%s%s\n", c.label(d).c_str(), c.perf ? " (perf)" : "");
      return 0;
    }
    if (coverage) return run_coverage(cases);
    if (!cpu_only && !cuda_available()) {
      std::fprintf(stderr, "error: no CUDA device: the comparison needs one (--cpu-only runs the CPU side alone)\n");
      return 2;
    }
    if (perf) return run_perf(cases, filter);
    return run_checks(cases, filter, cpu_only);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
