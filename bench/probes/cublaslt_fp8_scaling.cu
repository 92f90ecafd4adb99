// Which FP8 scaling forms this GPU's cuBLASLt runs, and how fast, at the FP8 linear's shapes.
//
//   nvcc -O2 -std=c++17 -arch=sm_90a bench/probes/cublaslt_fp8_scaling.cu -lcublasLt -o fp8-probe
//   ./fp8-probe
//
// Per variant: the heuristic's status, the matmul's, the time of one GEMM and its error against
// the unscaled GEMM scaled on the host (row scale · column scale), for
//   unscaled      scalar scales (none set), the baseline;
//   outer         CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F on A (weight, its M = our n) and
//                 B (x, its N = our m), the scale pointers set before the heuristic;
//   outer+fast    the same with CUBLASLT_MATMUL_DESC_FAST_ACCUM = 1;
//   outer-late    the pointers set only after the heuristic (how gemm.cc asked before);
//   alpha-vec     CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO, alpha = the weight scales;
// each with and without a bias epilogue, D in bfloat16.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace {

#define CK(x)                                                                            \
  do {                                                                                   \
    cudaError_t e_ = (x);                                                                \
    if (e_ != cudaSuccess) {                                                             \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

constexpr size_t kWorkspace = 64u << 20;

enum Variant { kUnscaled, kOuter, kOuterFast, kOuterLate, kAlphaVector };
const char* name(Variant v) {
  switch (v) {
    case kUnscaled: return "unscaled  ";
    case kOuter: return "outer     ";
    case kOuterFast: return "outer+fast";
    case kOuterLate: return "outer-late";
    case kAlphaVector: return "alpha-vec ";
  }
  return "?";
}

struct Result {
  cublasStatus_t heuristic = CUBLAS_STATUS_SUCCESS, matmul = CUBLAS_STATUS_SUCCESS;
  int found = 0;
  float ms = 0.0f;
  bool ran = false;
};

Result run(cublasLtHandle_t lt, Variant v, bool bias, int64_t m, int64_t n, int64_t k, const void* w, const void* x,
           __nv_bfloat16* y, const float* w_scales, const float* x_scales, const __nv_bfloat16* bias_ptr, void* ws,
           int iters) {
  Result r;
  cublasLtMatmulDesc_t desc;
  cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t));
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof(nn));
  const int8_t fast = v == kOuterFast ? 1 : 0;
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast));
  const bool outer = v == kOuter || v == kOuterFast || v == kOuterLate;
  auto set_pointers = [&] {
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scales, sizeof(w_scales));
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scales, sizeof(x_scales));
  };
  if (outer) {
    const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode));
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode));
    if (v != kOuterLate) set_pointers();
  }
  if (v == kAlphaVector) {
    const int32_t mode = CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_POINTER_MODE, &mode, sizeof(mode));
  }
  if (bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue));
    const int32_t bias_type = CUDA_R_16BF;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type));
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr));
  }
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, k, n, k);
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, k, m, k);
  cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, n, m, n);
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kWorkspace, sizeof(kWorkspace));
  cublasLtMatmulHeuristicResult_t h{};
  r.heuristic = cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &h, &r.found);
  if (r.heuristic == CUBLAS_STATUS_SUCCESS && r.found > 0) {
    if (v == kOuterLate) set_pointers();
    const float one = 1.0f, zero = 0.0f;
    const void* alpha = v == kAlphaVector ? static_cast<const void*>(w_scales) : &one;
    r.matmul = cublasLtMatmul(lt, desc, alpha, w, la, x, lb, &zero, y, lc, y, lc, &h.algo, ws, kWorkspace, nullptr);
    if (r.matmul == CUBLAS_STATUS_SUCCESS) {
      CK(cudaDeviceSynchronize());
      cudaEvent_t a, b;
      cudaEventCreate(&a);
      cudaEventCreate(&b);
      cudaEventRecord(a);
      for (int i = 0; i < iters; ++i)
        cublasLtMatmul(lt, desc, alpha, w, la, x, lb, &zero, y, lc, y, lc, &h.algo, ws, kWorkspace, nullptr);
      cudaEventRecord(b);
      CK(cudaEventSynchronize(b));
      cudaEventElapsedTime(&r.ms, a, b);
      r.ms /= iters;
      r.ran = true;
    }
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(desc);
  return r;
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s (sm_%d%d), cuBLASLt %zu\n", prop.name, prop.major, prop.minor, cublasLtGetVersion());
  cublasLtHandle_t lt;
  cublasLtCreate(&lt);
  void* ws;
  CK(cudaMalloc(&ws, kWorkspace));
  struct Shape {
    int64_t m, n, k;
  };
  const Shape shapes[] = {{300, 160, 1536}, {32760, 1536, 1536}, {32760, 4608, 1536}, {32760, 8960, 1536},
                          {32760, 1536, 8960}, {32760, 5120, 5120}};
  for (const Shape& s : shapes) {
    std::printf("--- m %lld n %lld k %lld\n", (long long)s.m, (long long)s.n, (long long)s.k);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> byte(0, 255);
    auto codes = [&](size_t count) {
      std::vector<uint8_t> c(count);
      for (auto& b : c) {
        int v = byte(rng);
        if ((v & 0x7f) == 0x7f) v &= ~1;  // no NaN codes
        if ((v & 0x78) >= 0x50) v &= 0x87 | 0x40;  // |value| kept below 2^3: no overflow in bf16 sums
        b = static_cast<uint8_t>(v);
      }
      return c;
    };
    const auto hw = codes(size_t(s.n) * s.k), hx = codes(size_t(s.m) * s.k);
    std::vector<float> hws(s.n), hxs(s.m);
    std::uniform_real_distribution<float> scale(0.5f, 2.0f);
    for (auto& v : hws) v = scale(rng) * 1e-2f;
    for (auto& v : hxs) v = scale(rng) * 1e-2f;
    std::vector<__nv_bfloat16> hb(s.n);
    for (auto& v : hb) v = __float2bfloat16(scale(rng));
    void *w, *x;
    float *wsc, *xsc;
    __nv_bfloat16 *y, *bias;
    CK(cudaMalloc(&w, hw.size()));
    CK(cudaMalloc(&x, hx.size()));
    CK(cudaMalloc(&wsc, s.n * 4));
    CK(cudaMalloc(&xsc, s.m * 4));
    CK(cudaMalloc(&y, size_t(s.m) * s.n * 2));
    CK(cudaMalloc(&bias, s.n * 2));
    CK(cudaMemcpy(w, hw.data(), hw.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(x, hx.data(), hx.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(wsc, hws.data(), s.n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(xsc, hxs.data(), s.m * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(bias, hb.data(), s.n * 2, cudaMemcpyHostToDevice));
    const int iters = s.m > 1000 ? 20 : 5;
    const double flop = 2.0 * s.m * s.n * s.k;
    std::vector<__nv_bfloat16> base(size_t(s.m) * s.n), got(base.size());
    for (bool with_bias : {false, true}) {
      const Result b = run(lt, kUnscaled, false, s.m, s.n, s.k, w, x, y, wsc, xsc, bias, ws, iters);
      CK(cudaMemcpy(base.data(), y, base.size() * 2, cudaMemcpyDeviceToHost));
      for (Variant v : {kUnscaled, kOuter, kOuterFast, kOuterLate, kAlphaVector}) {
        const Result r = run(lt, v, with_bias, s.m, s.n, s.k, w, x, y, wsc, xsc, bias, ws, iters);
        std::printf("  %s %s heuristic %-28s found %d matmul %-28s", name(v), with_bias ? "+bias" : "     ",
                    cublasLtGetStatusName(r.heuristic), r.found, r.ran || r.found ? cublasLtGetStatusName(r.matmul) : "-");
        if (r.ran) {
          CK(cudaMemcpy(got.data(), y, got.size() * 2, cudaMemcpyDeviceToHost));
          double err = 0, ref2 = 0;
          for (int64_t i = 0; i < s.m; i += 7) {
            for (int64_t j = 0; j < s.n; j += 3) {
              double want = __bfloat162float(base[i * s.n + j]);
              if (v == kOuter || v == kOuterFast || v == kOuterLate) want *= double(hws[j]) * hxs[i];
              if (v == kAlphaVector) want *= hws[j];
              if (with_bias) want += __bfloat162float(hb[j]);
              const double d = __bfloat162float(got[i * s.n + j]) - want;
              err += d * d;
              ref2 += want * want;
            }
          }
          std::printf(" %8.3f ms %7.0f TFLOP/s rel_l2 vs host-scaled %.2e", r.ms, flop / r.ms / 1e9,
                      std::sqrt(err / (ref2 > 0 ? ref2 : 1)));
        }
        std::printf("\n");
      }
      (void)b;
    }
    cudaFree(w);
    cudaFree(x);
    cudaFree(wsc);
    cudaFree(xsc);
    cudaFree(y);
    cudaFree(bias);
  }
  return 0;
}
