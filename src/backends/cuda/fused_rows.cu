// Row kernels for the DiT block's memory-bound glue:
//  - qkv_norm_rope: reads one row of a fused q|k|v projection [3·D] once, RMS-normalises
//    q and k across all heads (float32 statistics), rounds them to the storage dtype like
//    the reference's separate norm modules, rotates the pairs in float32 and writes q, k,
//    v as contiguous [H, dh] rows; the three strided copies, two norms and two rotations
//    of the unfused path become one pass. Vectorised (a group of threads per row, the
//    row's q then k held in registers as 16-byte runs: interleaved pairs inside a run, or
//    split-half pairs as a run and its partner half a head on) where the shapes allow; one
//    CTA per row otherwise. The table is one row per token or per (item, token, head)
//    (ops::RopeTableLayout: LTX-2's per-head frequency slices).
//    With per-head norms (LongCat's RMSNorm_FP32 per head) a team of dh/E threads of one
//    warp owns one (token, q|k|v, head) run of dh values: the team's squares are summed with
//    shuffles, the row rounded before the weight (or, torch.nn.RMSNorm's way, once after it)
//    and again before the rotation.
//  - gated residual add with a per-batch or per-token gate row, any input dtypes: the
//    broadcast the generic strided walker handles with index arithmetic per element.
//    Vectorised (one 16-byte run per thread) when residual and out share a dtype.
#include <initializer_list>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/kernel_common.cuh"
#include "backends/row_layout.h"

namespace fastdit::cuda {
namespace {

constexpr int kRowThreads = 256;

struct QkvParams {
  const void* qkv;
  void *q, *k, *v;
  const void *norm_q, *norm_k;
  FloatCode norm_code;
  const float *cos, *sin;  // rows of dh at table_row(): [S, dh] or [B|1, S, H|1, dh]
  int64_t table_batch, table_seq, table_head;  // ops::RopeTableLayout's offsets
  int64_t dim, head_dim, seq, rows;
  int64_t qkv_stride;  // elements between rows of qkv: 3·dim, or more for a column range of a wider output
  float eps;
  bool interleaved;
  bool round_before_weight;  // per-head norms: RMSNorm_FP32's rounding, else one rounding after the weight
};

// Where the table row of (row = b·S + s, head) starts.
__device__ __forceinline__ int64_t table_row(const QkvParams& p, int64_t row, int64_t head) {
  return (row / p.seq) * p.table_batch + (row % p.seq) * p.table_seq + head * p.table_head;
}

// Normalises and rotates one of q (part 0) or k (part 1) of the row.
template <class T>
__device__ void norm_rope_part(const QkvParams& p, const T* in, T* out, const void* weight, int64_t row,
                               float* scratch) {
  float squares = 0.0f;
  for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) {
    const float v = to_float(in[j]);
    squares += v * v;
  }
  const float inv_rms = 1.0f / sqrtf(block_sum(squares, scratch) / static_cast<float>(p.dim) + p.eps);
  const int64_t half = p.head_dim / 2;
  for (int64_t pair = threadIdx.x; pair < p.dim / 2; pair += blockDim.x) {
    const int64_t head = pair / half, i = pair % half;
    const float* cos = p.cos + table_row(p, row, head);
    const float* sin = p.sin + table_row(p, row, head);
    const int64_t a = p.interleaved ? 2 * i : i, a2 = p.interleaved ? a + 1 : a + half;
    const int64_t ja = head * p.head_dim + a, ja2 = head * p.head_dim + a2;
    // Rounded to T first: the reference normalises in one module and rotates in another.
    const float x1 = to_float(from_float<T>(to_float(in[ja]) * inv_rms * load_float(weight, p.norm_code, ja)));
    const float x2 = to_float(from_float<T>(to_float(in[ja2]) * inv_rms * load_float(weight, p.norm_code, ja2)));
    out[ja] = from_float<T>(x1 * cos[a] - x2 * sin[a]);
    out[ja2] = from_float<T>(x2 * cos[a2] + x1 * sin[a2]);
  }
}

template <class T>
__global__ void qkv_norm_rope_rows(QkvParams p) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* in = static_cast<const T*>(p.qkv) + row * p.qkv_stride;
  norm_rope_part(p, in, static_cast<T*>(p.q) + row * p.dim, p.norm_q, row, scratch);
  norm_rope_part(p, in + p.dim, static_cast<T*>(p.k) + row * p.dim, p.norm_k, row, scratch);
  T* v = static_cast<T*>(p.v) + row * p.dim;
  for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) v[j] = in[2 * p.dim + j];
}

constexpr int kMaxRuns = 8;  // runs of q (then k) per thread in registers

// Interleaved pairs only: a pair (2i, 2i+1) never straddles a run, and with head_dim a
// whole number of runs a run's cos/sin entries are contiguous in the table row.
template <class T, int kRuns>
__global__ void __launch_bounds__(kRowThreads) qkv_norm_rope_vectorized(QkvParams p, int group) {
  constexpr int E = kRun<T>;
  __shared__ float scratch[kRowThreads / 32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kRowThreads / group) + threadIdx.x / group;
  const int lane = threadIdx.x % group;
  const int runs = static_cast<int>(p.dim / E);
  const bool active = row < p.rows;  // inactive threads still join the reductions
  const T* in = static_cast<const T*>(p.qkv) + row * p.qkv_stride;
  if (active) {
    const auto* from = reinterpret_cast<const Vector<T>*>(in + 2 * p.dim);
    auto* to = reinterpret_cast<Vector<T>*>(static_cast<T*>(p.v) + row * p.dim);
    for (int run = lane; run < runs; run += group) to[run] = from[run];
  }
#pragma unroll 1
  for (int part = 0; part < 2; ++part) {
    const T* x = in + part * p.dim;
    float v[kRuns][E];
    float squares = 0.0f;
#pragma unroll
    for (int k = 0; k < kRuns; ++k) {
      const int run = k * group + lane;
#pragma unroll
      for (int e = 0; e < E; ++e) v[k][e] = 0.0f;
      if (active && run < runs) load_run<E>(x + static_cast<int64_t>(run) * E, v[k]);
#pragma unroll
      for (int e = 0; e < E; ++e) squares += v[k][e] * v[k][e];
    }
    const float inv_rms =
        1.0f / sqrtf(group_sum(squares, group, scratch) / static_cast<float>(p.dim) + p.eps);
    if (!active) continue;
    const void* weight = part == 0 ? p.norm_q : p.norm_k;
    T* out = static_cast<T*>(part == 0 ? p.q : p.k) + row * p.dim;
#pragma unroll
    for (int k = 0; k < kRuns; ++k) {
      const int run = k * group + lane;
      if (run >= runs) continue;
      const int64_t j = static_cast<int64_t>(run) * E;
      const int64_t table = table_row(p, row, j / p.head_dim) + j % p.head_dim;
      float w[E], cos[E], sin[E], y[E];
      load_run<E>(weight, p.norm_code, j, w);
      load_run<E>(p.cos + table, cos);
      load_run<E>(p.sin + table, sin);
#pragma unroll
      for (int e = 0; e < E; e += 2) {
        // Rounded to T first: the reference normalises in one module and rotates in another.
        const float x1 = to_float(from_float<T>(v[k][e] * inv_rms * w[e]));
        const float x2 = to_float(from_float<T>(v[k][e + 1] * inv_rms * w[e + 1]));
        y[e] = x1 * cos[e] - x2 * sin[e];
        y[e + 1] = x2 * cos[e + 1] + x1 * sin[e + 1];
      }
      store_run(out + j, y);
    }
  }
}

// Split-half pairs (x[i], x[i + dh/2]): a unit is a run of a head's first half and the run
// half a head on (its partners), so a thread rotates both from its registers; dh/2 a whole
// number of runs. kUnits units of q (then k) per thread, two runs each.
template <class T, int kUnits>
__global__ void __launch_bounds__(kRowThreads) qkv_norm_rope_split_vectorized(QkvParams p, int group) {
  constexpr int E = kRun<T>;
  __shared__ float scratch[kRowThreads / 32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kRowThreads / group) + threadIdx.x / group;
  const int lane = threadIdx.x % group;
  const int64_t half = p.head_dim / 2;
  const int half_runs = static_cast<int>(half / E);
  const int units = static_cast<int>(p.dim / (2 * E));
  const bool active = row < p.rows;  // inactive threads still join the reductions
  const T* in = static_cast<const T*>(p.qkv) + row * p.qkv_stride;
  if (active) {
    const auto* from = reinterpret_cast<const Vector<T>*>(in + 2 * p.dim);
    auto* to = reinterpret_cast<Vector<T>*>(static_cast<T*>(p.v) + row * p.dim);
    for (int run = lane; run < 2 * units; run += group) to[run] = from[run];
  }
#pragma unroll 1
  for (int part = 0; part < 2; ++part) {
    const T* x = in + part * p.dim;
    float lo[kUnits][E], hi[kUnits][E];
    float squares = 0.0f;
#pragma unroll
    for (int k = 0; k < kUnits; ++k) {
      const int unit = k * group + lane;
#pragma unroll
      for (int e = 0; e < E; ++e) lo[k][e] = hi[k][e] = 0.0f;
      if (active && unit < units) {
        const int64_t j = (unit / half_runs) * p.head_dim + static_cast<int64_t>(unit % half_runs) * E;
        load_run<E>(x + j, lo[k]);
        load_run<E>(x + j + half, hi[k]);
      }
#pragma unroll
      for (int e = 0; e < E; ++e) squares += lo[k][e] * lo[k][e] + hi[k][e] * hi[k][e];
    }
    const float inv_rms =
        1.0f / sqrtf(group_sum(squares, group, scratch) / static_cast<float>(p.dim) + p.eps);
    if (!active) continue;
    const void* weight = part == 0 ? p.norm_q : p.norm_k;
    T* out = static_cast<T*>(part == 0 ? p.q : p.k) + row * p.dim;
#pragma unroll
    for (int k = 0; k < kUnits; ++k) {
      const int unit = k * group + lane;
      if (unit >= units) continue;
      const int64_t head = unit / half_runs, a = static_cast<int64_t>(unit % half_runs) * E;
      const int64_t j = head * p.head_dim + a;
      const int64_t table = table_row(p, row, head) + a;
      float w1[E], w2[E], cos1[E], sin1[E], cos2[E], sin2[E], y1[E], y2[E];
      load_run<E>(weight, p.norm_code, j, w1);
      load_run<E>(weight, p.norm_code, j + half, w2);
      load_run<E>(p.cos + table, cos1);
      load_run<E>(p.sin + table, sin1);
      load_run<E>(p.cos + table + half, cos2);
      load_run<E>(p.sin + table + half, sin2);
#pragma unroll
      for (int e = 0; e < E; ++e) {
        // Rounded to T first: the reference normalises in one module and rotates in another.
        const float x1 = to_float(from_float<T>(lo[k][e] * inv_rms * w1[e]));
        const float x2 = to_float(from_float<T>(hi[k][e] * inv_rms * w2[e]));
        y1[e] = x1 * cos1[e] - x2 * sin1[e];
        y2[e] = x2 * cos2[e] + x1 * sin2[e];
      }
      store_run(out + j, y1);
      store_run(out + j + half, y2);
    }
  }
}

// Per-head norms: `lanes` = dh / E threads (a power of two, at most a warp) per (token, part,
// head), each holding one 16-byte run; part 2 is v, copied. Interleaved pairs only (a pair
// never straddles a run). Every thread of a warp joins the shuffles, active or not.
template <class T>
__global__ void __launch_bounds__(kRowThreads) qkv_head_norm_rope(QkvParams p, int lanes) {
  constexpr int E = kRun<T>;
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * kRowThreads + threadIdx.x;
  const int lane = static_cast<int>(thread % lanes);
  const int64_t heads = p.dim / p.head_dim, team = thread / lanes;
  const bool active = team < p.rows * 3 * heads;
  const int64_t row = team / (3 * heads), part = team / heads % 3, head = team % heads;
  const int64_t in_offset = row * p.qkv_stride + part * p.dim + head * p.head_dim + lane * E;
  float v[E];
#pragma unroll
  for (int e = 0; e < E; ++e) v[e] = 0.0f;
  if (active) load_run<E>(static_cast<const T*>(p.qkv) + in_offset, v);
  float squares = 0.0f;
#pragma unroll
  for (int e = 0; e < E; ++e) squares += v[e] * v[e];
  for (int offset = lanes / 2; offset > 0; offset /= 2) squares += __shfl_xor_sync(0xffffffffu, squares, offset);
  if (!active) return;
  const int64_t out_offset = row * p.dim + head * p.head_dim + lane * E;
  if (part == 2) {
    store_run(static_cast<T*>(p.v) + out_offset, v);  // exact: v holds values of T
    return;
  }
  const float inv_rms = 1.0f / sqrtf(squares / static_cast<float>(p.head_dim) + p.eps);
  const int64_t table = table_row(p, row, head) + lane * E;
  float w[E], cos[E], sin[E], y[E];
  load_run<E>(part == 0 ? p.norm_q : p.norm_k, p.norm_code, lane * E, w);
  load_run<E>(p.cos + table, cos);
  load_run<E>(p.sin + table, sin);
  const auto normed = [&](float x, float weight) {
    const float unit = p.round_before_weight ? to_float(from_float<T>(x * inv_rms)) : x * inv_rms;
    return to_float(from_float<T>(unit * weight));
  };
#pragma unroll
  for (int e = 0; e < E; e += 2) {
    const float x1 = normed(v[e], w[e]), x2 = normed(v[e + 1], w[e + 1]);
    y[e] = x1 * cos[e] - x2 * sin[e];
    y[e + 1] = x2 * cos[e + 1] + x1 * sin[e + 1];
  }
  store_run(static_cast<T*>(part == 0 ? p.q : p.k) + out_offset, y);
}

bool try_qkv_per_head(const QkvParams& p, FloatCode code, cudaStream_t stream) {
  const int e = code == FloatCode::F32 ? kRun<float> : kRun<__nv_bfloat16>;
  const int64_t lanes = p.head_dim / e;
  if (!p.interleaved || p.head_dim % e != 0 || lanes > 32 || (lanes & (lanes - 1)) != 0) return false;
  if (p.qkv_stride % e != 0) return false;
  for (const void* ptr : std::initializer_list<const void*>{p.qkv, p.q, p.k, p.v, p.norm_q, p.norm_k, p.cos, p.sin}) {
    if (!aligned16(ptr)) return false;
  }
  const int64_t threads = p.rows * 3 * (p.dim / p.head_dim) * lanes;
  const auto blocks = static_cast<unsigned>((threads + kRowThreads - 1) / kRowThreads);
  switch (code) {
    case FloatCode::F32: qkv_head_norm_rope<float><<<blocks, kRowThreads, 0, stream>>>(p, static_cast<int>(lanes)); break;
    case FloatCode::BF16: qkv_head_norm_rope<__nv_bfloat16><<<blocks, kRowThreads, 0, stream>>>(p, static_cast<int>(lanes)); break;
    case FloatCode::F16: qkv_head_norm_rope<__half><<<blocks, kRowThreads, 0, stream>>>(p, static_cast<int>(lanes)); break;
  }
  FASTDIT_CUDA_CHECK_LAUNCH();
  return true;
}

// run(T*) with the storage type of `code` (a null pointer of it, for template deduction).
template <class Run>
void with_float_type(FloatCode code, const Run& run) {
  switch (code) {
    case FloatCode::F32: return run(static_cast<float*>(nullptr));
    case FloatCode::BF16: return run(static_cast<__nv_bfloat16*>(nullptr));
    case FloatCode::F16: return run(static_cast<__half*>(nullptr));
  }
}

// The split-half kernel for p (head_dim a whole number of run pairs, operands aligned: the
// caller checked); false (nothing launched) when the row's units do not fit the registers.
bool try_qkv_split_vectorized(const QkvParams& p, FloatCode code, cudaStream_t stream) {
  constexpr int kMaxUnits = kMaxRuns / 2;  // two runs each: the interleaved kernel's registers
  const int e = code == FloatCode::F32 ? kRun<float> : kRun<__nv_bfloat16>;
  const RowLaunch launch = row_launch(p.dim / (2 * e), p.rows, kRowThreads, kMaxUnits, kMaxUnits);
  if (launch.group == 0) return false;
  const auto run = [&]<class T>(T*) {
    with_runs<kMaxUnits>(launch.runs_per_thread, [&](auto units) {
      qkv_norm_rope_split_vectorized<T, units()><<<launch.blocks, kRowThreads, 0, stream>>>(p, launch.group);
    });
  };
  with_float_type(code, run);
  FASTDIT_CUDA_CHECK_LAUNCH();
  return true;
}

// Launches the vectorised kernel when it can serve p; false (nothing launched) otherwise.
bool try_qkv_vectorized(const QkvParams& p, FloatCode code, cudaStream_t stream) {
  const int e = code == FloatCode::F32 ? kRun<float> : kRun<__nv_bfloat16>;
  if (p.head_dim % (p.interleaved ? e : 2 * e) != 0 || p.qkv_stride % e != 0) return false;
  for (const void* ptr : std::initializer_list<const void*>{p.qkv, p.q, p.k, p.v, p.norm_q, p.norm_k, p.cos, p.sin}) {
    if (!aligned16(ptr)) return false;
  }
  if (!p.interleaved) return try_qkv_split_vectorized(p, code, stream);
  const RowLaunch launch = row_launch(p.dim / e, p.rows, kRowThreads, kMaxRuns, kMaxRuns);
  if (launch.group == 0) return false;
  const auto run = [&]<class T>(T*) {
    with_runs<kMaxRuns>(launch.runs_per_thread, [&](auto runs) {
      qkv_norm_rope_vectorized<T, runs()><<<launch.blocks, kRowThreads, 0, stream>>>(p, launch.group);
    });
  };
  with_float_type(code, run);
  FASTDIT_CUDA_CHECK_LAUNCH();
  return true;
}

struct GatedRowParams {
  const void *residual, *x, *gate;
  void* out;
  FloatCode residual_code, x_code, gate_code, out_code;
  int64_t dim, seq;
  bool gate_per_token;
};

__global__ void gated_add_rows(GatedRowParams p) {
  const int64_t row = blockIdx.x;
  const int64_t gate_row = (p.gate_per_token ? row : row / p.seq) * p.dim;
  for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) {
    const int64_t i = row * p.dim + j;
    const float value = load_float(p.residual, p.residual_code, i) +
                        load_float(p.x, p.x_code, i) * load_float(p.gate, p.gate_code, gate_row + j);
    store_float(p.out, p.out_code, i, value);
  }
}

// One 16-byte run of residual and out (of T) per thread; x and gate of any float dtype.
template <class T>
__global__ void gated_add_vectorized(GatedRowParams p, uint32_t runs_per_row, uint32_t total_runs) {
  constexpr int E = kRun<T>;
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total_runs) return;
  const uint32_t row = i / runs_per_row, run = i - row * runs_per_row;
  const int64_t column = static_cast<int64_t>(run) * E;
  const int64_t offset = static_cast<int64_t>(row) * p.dim + column;
  const int64_t gate_offset = (p.gate_per_token ? row : row / p.seq) * p.dim + column;
  float r[E], x[E], g[E];
  load_run<E>(static_cast<const T*>(p.residual) + offset, r);
  load_run<E>(p.x, p.x_code, offset, x);
  load_run<E>(p.gate, p.gate_code, gate_offset, g);
#pragma unroll
  for (int e = 0; e < E; ++e) r[e] = r[e] + x[e] * g[e];
  store_run(static_cast<T*>(p.out) + offset, r);
}

bool try_gated_add_vectorized(const GatedRowParams& p, int64_t rows, cudaStream_t stream) {
  if (p.residual_code != p.out_code) return false;
  const int e = p.out_code == FloatCode::F32 ? kRun<float> : kRun<__nv_bfloat16>;
  if (p.dim % e != 0) return false;
  for (const void* ptr : std::initializer_list<const void*>{p.residual, p.x, p.gate, p.out}) {
    if (!aligned16(ptr)) return false;
  }
  const int64_t runs_per_row = p.dim / e, total = rows * runs_per_row;
  if (total >= (int64_t{1} << 31)) return false;  // 32-bit thread indices, with room for the last block
  const auto blocks = static_cast<unsigned>((total + kRowThreads - 1) / kRowThreads);
  const auto runs = static_cast<uint32_t>(runs_per_row), count = static_cast<uint32_t>(total);
  switch (p.out_code) {
    case FloatCode::F32: gated_add_vectorized<float><<<blocks, kRowThreads, 0, stream>>>(p, runs, count); break;
    case FloatCode::BF16:
      gated_add_vectorized<__nv_bfloat16><<<blocks, kRowThreads, 0, stream>>>(p, runs, count);
      break;
    case FloatCode::F16: gated_add_vectorized<__half><<<blocks, kRowThreads, 0, stream>>>(p, runs, count); break;
  }
  FASTDIT_CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace

bool qkv_norm_rope(const Tensor& qkv, const Tensor& norm_q, const Tensor& norm_k, float eps, const Tensor& cos,
                   const Tensor& sin, ops::RopeStyle style, bool per_head, bool round_before_weight, Tensor& q,
                   Tensor& k, Tensor& v) {
  const int64_t rows = qkv.numel() / qkv.size(-1);
  if (rows == 0) return true;
  const std::optional<int64_t> qkv_stride = even_row_stride(qkv);
  FASTDIT_CHECK(qkv_stride.has_value(), "qkv_norm_rope: qkv ", qkv.str(), " (strides ", shape_str(qkv.strides()),
                ") is not rows of unit stride, evenly spaced");
  QkvParams p{};
  p.qkv = qkv.data_ptr();
  p.qkv_stride = *qkv_stride;
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.norm_q = norm_q.data_ptr();
  p.norm_k = norm_k.data_ptr();
  FASTDIT_CHECK(norm_q.dtype() == norm_k.dtype() && cos.dtype() == DType::Float32 && sin.dtype() == DType::Float32,
                "qkv_norm_rope: norm weights of one dtype and float32 cos/sin expected");
  p.norm_code = float_code(norm_q.dtype());
  p.cos = static_cast<const float*>(cos.data_ptr());
  p.sin = static_cast<const float*>(sin.data_ptr());
  const ops::RopeTableLayout table = ops::rope_table_layout(cos);
  FASTDIT_CHECK(table.rotary == q.size(3), "qkv_norm_rope: the table rotates ", table.rotary,
                " dims, the heads have ", q.size(3));
  p.table_batch = table.batch;
  p.table_seq = table.seq;
  p.table_head = table.head;
  p.dim = q.size(2) * q.size(3);
  p.head_dim = q.size(3);
  p.seq = q.size(1);
  p.eps = eps;
  p.interleaved = style == ops::RopeStyle::Interleaved;
  p.round_before_weight = round_before_weight;
  p.rows = rows;
  DeviceGuard guard(qkv.device().index);
  const cudaStream_t stream = current_stream(qkv.device().index);
  if (per_head) return try_qkv_per_head(p, float_code(qkv.dtype()), stream);
  if (try_qkv_vectorized(p, float_code(qkv.dtype()), stream)) return true;
  switch (float_code(qkv.dtype())) {
    case FloatCode::F32: qkv_norm_rope_rows<float><<<rows, kRowThreads, 0, stream>>>(p); break;
    case FloatCode::BF16: qkv_norm_rope_rows<__nv_bfloat16><<<rows, kRowThreads, 0, stream>>>(p); break;
    case FloatCode::F16: qkv_norm_rope_rows<__half><<<rows, kRowThreads, 0, stream>>>(p); break;
  }
  FASTDIT_CUDA_CHECK_LAUNCH();
  return true;
}

bool gated_add_by_rows(const Tensor& residual, const Tensor& x, const Tensor& gate, Tensor& out) {
  // residual, x and out [..., L, D] contiguous; gate [..., 1, D] or [..., L, D] contiguous
  // (per item, per frame or per token), the leading dims flattened.
  const int64_t rank = out.dim();
  if (rank < 2 || residual.shape() != out.shape() || x.shape() != out.shape() || gate.dim() != rank ||
      gate.size(-1) != out.size(-1) || (gate.size(-2) != 1 && gate.size(-2) != out.size(-2)))
    return false;
  for (int64_t d = 0; d + 2 < rank; ++d) {
    if (gate.size(d) != out.size(d)) return false;
  }
  if (!residual.is_contiguous() || !x.is_contiguous() || !gate.is_contiguous() || !out.is_contiguous()) return false;
  const int64_t rows = out.size(-1) == 0 ? 0 : out.numel() / out.size(-1);
  if (rows == 0) return true;
  GatedRowParams p{residual.data_ptr(), x.data_ptr(), gate.data_ptr(), out.data_ptr(),
                   float_code(residual.dtype()), float_code(x.dtype()), float_code(gate.dtype()),
                   float_code(out.dtype()), out.size(-1), out.size(-2), gate.size(-2) != 1};
  DeviceGuard guard(out.device().index);
  const cudaStream_t stream = current_stream(out.device().index);
  if (try_gated_add_vectorized(p, rows, stream)) return true;
  gated_add_rows<<<rows, kRowThreads, 0, stream>>>(p);
  FASTDIT_CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace fastdit::cuda
