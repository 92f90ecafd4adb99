// cuBLASLt behind gemm_xwt. cuBLASLt is column-major, so row-major y[m, n] = x · wᵀ is
// asked for as the column-major D (n × m) = op_T(A) · op_N(B) with A = w seen as k × n
// (ld k) and B = x seen as k × m (ld k): the "TN" form, whose bias runs along D's rows,
// which is what the BIAS epilogues expect.
//
// A plan — matmul and layout descriptors plus the heuristic's best algorithm — is built
// once per (device, m, n, k, dtype, epilogue, bias dtype, pointer alignments) and cached,
// including the answer "no algorithm". The alignments are part of the key because
// cuBLASLt assumes 256-byte-aligned pointers unless told otherwise and then fails with a
// silent NOT_SUPPORTED; we tell it the real ones. Each device has one handle and a
// 32 MiB workspace (the Hopper recommendation), both kept for the process lifetime.
//
// Rows that do not depend on how many rows there are: from kRowInvariantRows rows on, the
// algorithm is the one the heuristic picks for kCanonicalRows rows with the same n, k and
// operands (checked to accept the real m). One algorithm means one tiling and one order of
// accumulation for every row, so a token's projection is bit-for-bit the same whether its
// sequence runs whole on one GPU or sharded over several: sequence parallelism then changes
// the numbers only where the math itself is split, not through GEMM shapes.
#include "backends/cuda/gemm.h"

#include <cublasLt.h>

#include <bit>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"

namespace fastdit::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;
constexpr int64_t kRowInvariantRows = 2048;
constexpr int64_t kCanonicalRows = 65536;

cudaDataType_t cuda_data_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return CUDA_R_32F;
    case DType::BFloat16: return CUDA_R_16BF;
    case DType::Float16: return CUDA_R_16F;
    default:
      FASTDIT_FAIL("cuBLASLt GEMM takes float32, bfloat16 or float16, not ", dtype_name(dtype));
  }
}

cublasLtEpilogue_t cublas_epilogue(GemmEpilogue epilogue) {
  switch (epilogue) {
    case GemmEpilogue::None: return CUBLASLT_EPILOGUE_DEFAULT;
    case GemmEpilogue::Bias: return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::GeluTanh: return CUBLASLT_EPILOGUE_GELU;
    case GemmEpilogue::GeluTanhBias: return CUBLASLT_EPILOGUE_GELU_BIAS;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

bool has_bias(GemmEpilogue epilogue) {
  return epilogue == GemmEpilogue::Bias || epilogue == GemmEpilogue::GeluTanhBias;
}

// The largest power of two (up to 256) dividing the address.
uint32_t alignment_of(const void* ptr) {
  const auto address = reinterpret_cast<uintptr_t>(ptr);
  // Capped before shifting: an address aligned to 2^32 or more must not shift a
  // 32-bit one out of range.
  return address == 0 ? 256u : uint32_t{1} << std::min(std::countr_zero(address), 8);
}

struct PlanKey {
  int device;
  int64_t m, n, k;
  DType dtype, bias_dtype;
  GemmEpilogue epilogue;
  uint32_t align_x, align_w, align_y;
  bool fp8, outer_scales;
  auto operator<=>(const PlanKey&) const = default;
};

struct Plan {
  bool runnable = false;
  cublasStatus_t heuristic_status = CUBLAS_STATUS_SUCCESS;
  cublasLtMatmulDesc_t matmul = nullptr;
  cublasLtMatrixLayout_t layout_w = nullptr, layout_x = nullptr, layout_y = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct DeviceContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

template <class T>
void set_matmul_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute,
                          const T& value) {
  FASTDIT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}

template <class T>
void set_preference(cublasLtMatmulPreference_t preference,
                    cublasLtMatmulPreferenceAttributes_t attribute, const T& value) {
  FASTDIT_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, sizeof(value)));
}

// g: the call the plan is first built for (outer-vector scales: its scale pointers, which
// cuBLASLt wants set before the heuristic, else it answers INVALID_VALUE).
Plan build_plan(const PlanKey& key, cublasLtHandle_t handle, const GemmOperands& g) {
  Plan plan;
  const cudaDataType_t type = cuda_data_type(key.dtype);
  // FP8 operands are K-major on both sides, which the TN form already is; accumulation
  // is never the fast (unpromoted) kind.
  const cudaDataType_t operand_type = key.fp8 ? CUDA_R_8F_E4M3 : type;
  FASTDIT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.matmul, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  set_matmul_attribute(plan.matmul, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  set_matmul_attribute(plan.matmul, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  set_matmul_attribute(plan.matmul, CUBLASLT_MATMUL_DESC_EPILOGUE, cublas_epilogue(key.epilogue));
  // Accumulation: the unscaled fallback promotes its partial sums to float32 (FAST_ACCUM 0);
  // the outer-vector kernels run with FAST_ACCUM 1, measured 1,308–1,495 against 1,063–1,345
  // TFLOP/s at Wan's shapes on the H200 (bench/probes/cublaslt_fp8_scaling.cu), their error
  // held by test_cuda_fp8's bound against the exact emulation.
  if (key.fp8) set_matmul_attribute(plan.matmul, CUBLASLT_MATMUL_DESC_FAST_ACCUM, int8_t{key.outer_scales ? 1 : 0});
  if (key.outer_scales) {
    // cuBLASLt's A is the weight (its M = our n) and B is x (its N = our m).
    const auto mode = static_cast<int32_t>(CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F);
    set_matmul_attribute(plan.matmul, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, mode);
    set_matmul_attribute(plan.matmul, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, mode);
    set_matmul_attribute(plan.matmul, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(g.weight_scales));
    set_matmul_attribute(plan.matmul, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(g.x_scales));
  }
  if (has_bias(key.epilogue)) {
    set_matmul_attribute(plan.matmul, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                         static_cast<int32_t>(cuda_data_type(key.bias_dtype)));
  }
  const auto rows = [](int64_t v) { return static_cast<uint64_t>(v); };
  FASTDIT_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan.layout_w, operand_type, rows(key.k), rows(key.n), key.k));
  FASTDIT_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan.layout_x, operand_type, rows(key.k), rows(key.m), key.k));
  FASTDIT_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan.layout_y, type, rows(key.n), rows(key.m), key.n));

  cublasLtMatmulPreference_t preference = nullptr;
  FASTDIT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  set_preference(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{kWorkspaceBytes});
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_y);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_y);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (key.m >= kRowInvariantRows && key.m != kCanonicalRows) {
    cublasLtMatrixLayout_t canonical_x = nullptr, canonical_y = nullptr;
    FASTDIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&canonical_x, operand_type, rows(key.k), rows(kCanonicalRows), key.k));
    FASTDIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&canonical_y, type, rows(key.n), rows(kCanonicalRows), key.n));
    cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, plan.matmul, plan.layout_w, canonical_x,
                                                           canonical_y, canonical_y, preference, 1, &result, &found);
    cublasLtMatrixLayoutDestroy(canonical_x);
    cublasLtMatrixLayoutDestroy(canonical_y);
    if (status == CUBLAS_STATUS_SUCCESS && found > 0) {
      cublasLtMatmulHeuristicResult_t checked{};
      status = cublasLtMatmulAlgoCheck(handle, plan.matmul, plan.layout_w, plan.layout_x, plan.layout_y,
                                       plan.layout_y, &result.algo, &checked);
      if (status == CUBLAS_STATUS_SUCCESS && checked.workspaceSize <= kWorkspaceBytes) {
        cublasLtMatmulPreferenceDestroy(preference);
        plan.runnable = true;
        plan.algo = result.algo;
        return plan;
      }
    }
    found = 0;  // the canonical choice does not fit this m: the heuristic's own for it
  }
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(handle, plan.matmul, plan.layout_w, plan.layout_x,
                                     plan.layout_y, plan.layout_y, preference, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  // A heuristic that fails (NOT_SUPPORTED, or INVALID_VALUE for a bias type the epilogue
  // does not take) means a plan that cannot run; the caller falls back or says why.
  plan.heuristic_status = status;
  plan.runnable = status == CUBLAS_STATUS_SUCCESS && found > 0;
  plan.algo = result.algo;
  return plan;
}

class GemmRunner {
 public:
  // Nothing (and `failure` says why) when cuBLASLt has no algorithm for the plain GEMM.
  std::optional<GemmEpilogue> run(const GemmOperands& g, GemmEpilogue wanted, std::string& failure) {
    std::lock_guard lock(mutex_);
    DeviceGuard guard(g.device);
    const DeviceContext& context = device_context(g.device);
    // The bias pointer is not part of a plan; with an unaligned one nothing is fused (a
    // fused GELU would then come before the caller's bias add).
    if (has_bias(wanted) && alignment_of(g.bias) < 16) wanted = GemmEpilogue::None;
    Plan* plan = &plan_for(g, wanted, context.handle);
    if (!plan->runnable && wanted != GemmEpilogue::None) {
      wanted = GemmEpilogue::None;
      plan = &plan_for(g, wanted, context.handle);
    }
    const auto say_why = [&] {
      failure = ::fastdit::detail::concat(
          "cuBLASLt has no algorithm for the ", g.fp8 ? "float8_e4m3fn -> " : "", dtype_name(g.dtype), " GEMM [",
          g.m, ", ", g.k, "] x [", g.n, ", ", g.k, "]^T", g.x_scales ? " with outer-vector scales" : "",
          " at pointer alignments ", alignment_of(g.x), "/", alignment_of(g.weight), "/", alignment_of(g.y),
          " bytes (heuristic: ", cublasLtGetStatusString(plan->heuristic_status), ")");
    };
    if (!plan->runnable) {
      say_why();
      return std::nullopt;
    }
    if (has_bias(wanted)) {
      set_matmul_attribute(plan->matmul, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
    }
    if (g.x_scales) {
      set_matmul_attribute(plan->matmul, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(g.weight_scales));
      set_matmul_attribute(plan->matmul, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(g.x_scales));
    }
    const float alpha = 1.0f, beta = 0.0f;
    const cublasStatus_t status =
        cublasLtMatmul(context.handle, plan->matmul, &alpha, g.weight, plan->layout_w, g.x, plan->layout_x, &beta,
                       g.y, plan->layout_y, g.y, plan->layout_y, &plan->algo, context.workspace, kWorkspaceBytes,
                       current_stream(g.device));
    if (status != CUBLAS_STATUS_SUCCESS && g.x_scales) {
      // A scaling mode the heuristic offered but the matmul refuses: remembered as "no
      // algorithm", so the caller's fallback takes over from now on.
      plan->runnable = false;
      plan->heuristic_status = status;
      say_why();
      return std::nullopt;
    }
    FASTDIT_CUBLAS_CHECK(status);
    return wanted;
  }

 private:
  Plan& plan_for(const GemmOperands& g, GemmEpilogue epilogue, cublasLtHandle_t handle) {
    const PlanKey key{g.device,
                      g.m,
                      g.n,
                      g.k,
                      g.dtype,
                      has_bias(epilogue) ? g.bias_dtype : g.dtype,
                      epilogue,
                      alignment_of(g.x),
                      alignment_of(g.weight),
                      alignment_of(g.y),
                      g.fp8,
                      g.x_scales != nullptr};
    auto found = plans_.find(key);
    if (found == plans_.end()) found = plans_.emplace(key, build_plan(key, handle, g)).first;
    return found->second;
  }

  const DeviceContext& device_context(int device) {
    DeviceContext& context = contexts_[device];
    if (context.handle == nullptr) {
      FASTDIT_CUBLAS_CHECK(cublasLtCreate(&context.handle));
      context.workspace = device_hooks(DeviceType::CUDA).allocate(kWorkspaceBytes, device);
    }
    return context;
  }

  std::mutex mutex_;
  std::map<int, DeviceContext> contexts_;
  std::map<PlanKey, Plan> plans_;
};

GemmRunner& runner() {
  static auto* instance = new GemmRunner();  // leaked: outlives every static tensor
  return *instance;
}

}  // namespace

std::optional<GemmEpilogue> try_gemm_xwt(const GemmOperands& operands, GemmEpilogue wanted) {
  std::string failure;
  return runner().run(operands, wanted, failure);
}

GemmEpilogue gemm_xwt(const GemmOperands& operands, GemmEpilogue wanted) {
  std::string failure;
  const std::optional<GemmEpilogue> ran = runner().run(operands, wanted, failure);
  if (!ran) FASTDIT_FAIL(failure);
  return *ran;
}

}  // namespace fastdit::cuda
