// cuDNN's fused SDPA forward through the cuDNN 9 backend API (no frontend).
//
// One SDPA_FWD operation (the "unified" op, cuDNN >= 9.13.1 at run time) over Q, K, V in
// our [B, S, H, D] memory, described to cuDNN as [b, h, s, d] with strides
// (S·H·D, D, H·D, 1), so no transposes are made; O likewise; the softmax scale is a
// {1,1,1,1} float32 tensor passed by value (a host pointer in the variant pack). No
// stats output: that is for training.
//
// Graph → heuristics (mode A, then FALLBACK) → the first engine config whose execution
// plan finalises. Building a plan costs up to a second the first time a head dim is seen
// in a process (cuDNN compiles kernels), so plans are built once per (device, dtype,
// B, H, Sq, Sk, D, Dv) and cached (grouped K/V heads Hkv in the key too), refusals included.
#include <cudnn.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "backends/cuda/attention.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"

namespace fastdit::cuda {

namespace detail {

std::string cudnn_status_message(int status) {
  std::string message = cudnnGetErrorString(static_cast<cudnnStatus_t>(status));
  char last_error[1024] = {};
  cudnnGetLastErrorString(last_error, sizeof(last_error));
  if (last_error[0] != '\0') message += std::string(" (") + last_error + ")";
  return message;
}

}  // namespace detail

namespace {

constexpr size_t kMinCudnnVersion = 91301;  // the unified SDPA op

enum Uid : int64_t { kUidQ = 1, kUidK, kUidV, kUidO, kUidScale };

// Owns one backend descriptor.
class Descriptor {
 public:
  explicit Descriptor(cudnnBackendDescriptorType_t type) {
    FASTDIT_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &handle_));
  }
  ~Descriptor() {
    if (handle_ != nullptr) cudnnBackendDestroyDescriptor(handle_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  cudnnBackendDescriptor_t get() const { return handle_; }

  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
           const void* values) {
    FASTDIT_CUDNN_CHECK(cudnnBackendSetAttribute(handle_, name, type, count, values));
  }
  void set(cudnnBackendAttributeName_t name, const Descriptor& child) {
    const cudnnBackendDescriptor_t value = child.get();
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
  }
  void set_handle(cudnnBackendAttributeName_t name, cudnnHandle_t handle) {
    set(name, CUDNN_TYPE_HANDLE, 1, &handle);
  }
  void finalize() { FASTDIT_CUDNN_CHECK(cudnnBackendFinalize(handle_)); }

 private:
  cudnnBackendDescriptor_t handle_ = nullptr;
};

using Descriptors = std::vector<std::unique_ptr<Descriptor>>;

// cuDNN 9.19 deprecates the HANDLE attributes in favour of DEVICEPROP descriptors, which
// the 9.14 runtime on the GPU machine does not know; the handle form works on both.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
constexpr cudnnBackendAttributeName_t kGraphHandle = CUDNN_ATTR_OPERATIONGRAPH_HANDLE;
constexpr cudnnBackendAttributeName_t kPlanHandle = CUDNN_ATTR_EXECUTION_PLAN_HANDLE;
#pragma GCC diagnostic pop

struct PlanKey {
  int device;
  DType dtype;
  int64_t batch, heads, kv_heads, q_len, kv_len, head_dim, value_dim;
  auto operator<=>(const PlanKey&) const = default;
};

struct Plan {
  Descriptors keep_alive;  // tensors, operation and graph the plan was built from
  std::unique_ptr<Descriptor> execution_plan;
  int64_t workspace_bytes = 0;
};

struct CachedPlan {
  std::unique_ptr<Plan> plan;
  std::string refusal;  // why there is no plan
};

Descriptor& make_descriptor(Descriptors& all, cudnnBackendDescriptorType_t type) {
  all.push_back(std::make_unique<Descriptor>(type));
  return *all.back();
}

// A [b, h, s, d] view of our [B, S, H, D] memory.
Descriptor& sequence_tensor(Descriptors& all, Uid uid, cudnnDataType_t type, int64_t batch,
                            int64_t heads, int64_t seq, int64_t dim) {
  const int64_t dims[4] = {batch, heads, seq, dim};
  const int64_t strides[4] = {seq * heads * dim, dim, heads * dim, 1};
  const int64_t uid_value = uid, alignment = 16;
  Descriptor& t = make_descriptor(all, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
  t.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
  t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid_value);
  t.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  t.finalize();
  return t;
}

Descriptor& scale_tensor(Descriptors& all) {
  const int64_t ones[4] = {1, 1, 1, 1};
  const int64_t uid_value = kUidScale, alignment = 16;
  const cudnnDataType_t type = CUDNN_DATA_FLOAT;
  const bool by_value = true;
  Descriptor& t = make_descriptor(all, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, ones);
  t.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, ones);
  t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid_value);
  t.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
  t.finalize();
  return t;
}

Descriptor& sdpa_graph(Descriptors& all, const PlanKey& key, cudnnHandle_t handle) {
  const cudnnDataType_t type = key.dtype == DType::BFloat16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF;
  Descriptor& q = sequence_tensor(all, kUidQ, type, key.batch, key.heads, key.q_len, key.head_dim);
  // Grouped K/V heads are described as they are; cuDNN maps query heads onto them.
  Descriptor& k = sequence_tensor(all, kUidK, type, key.batch, key.kv_heads, key.kv_len, key.head_dim);
  Descriptor& v =
      sequence_tensor(all, kUidV, type, key.batch, key.kv_heads, key.kv_len, key.value_dim);
  Descriptor& o = sequence_tensor(all, kUidO, type, key.batch, key.heads, key.q_len, key.value_dim);
  Descriptor& scale = scale_tensor(all);
  Descriptor& sdpa = make_descriptor(all, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR);
  sdpa.set(CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, q);
  sdpa.set(CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, k);
  sdpa.set(CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, v);
  sdpa.set(CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, o);
  sdpa.set(CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, scale);
  sdpa.finalize();
  Descriptor& graph = make_descriptor(all, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  graph.set_handle(kGraphHandle, handle);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, sdpa);
  graph.finalize();
  return graph;
}

// The engine configs the heuristic of `mode` proposes, best first.
Descriptors engine_configs(const Descriptor& graph, cudnnBackendHeurMode_t mode) {
  Descriptor heuristic(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  heuristic.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
  heuristic.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  heuristic.finalize();
  int64_t count = 0;
  FASTDIT_CUDNN_CHECK(cudnnBackendGetAttribute(heuristic.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
  Descriptors configs;
  std::vector<cudnnBackendDescriptor_t> handles;
  for (int64_t i = 0; i < count; ++i) {
    configs.push_back(std::make_unique<Descriptor>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    handles.push_back(configs.back()->get());
  }
  FASTDIT_CUDNN_CHECK(cudnnBackendGetAttribute(heuristic.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count,
                                               handles.data()));
  configs.resize(static_cast<size_t>(count));
  return configs;
}

// Not every proposed config finalises; the first that does is the plan.
std::unique_ptr<Descriptor> first_runnable_plan(const Descriptor& graph, cudnnHandle_t handle) {
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    for (const auto& config : engine_configs(graph, mode)) {
      auto plan = std::make_unique<Descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      plan->set_handle(kPlanHandle, handle);
      plan->set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, *config);
      if (cudnnBackendFinalize(plan->get()) == CUDNN_STATUS_SUCCESS) return plan;
    }
  }
  FASTDIT_FAIL("no cuDNN engine configuration finalises: ",
               detail::cudnn_status_message(CUDNN_STATUS_NOT_SUPPORTED));
}

CachedPlan build_plan(const PlanKey& key, cudnnHandle_t handle) {
  CachedPlan cached;
  try {
    auto plan = std::make_unique<Plan>();
    const Descriptor& graph = sdpa_graph(plan->keep_alive, key, handle);
    plan->execution_plan = first_runnable_plan(graph, handle);
    FASTDIT_CUDNN_CHECK(cudnnBackendGetAttribute(
        plan->execution_plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
        nullptr, &plan->workspace_bytes));
    cached.plan = std::move(plan);
  } catch (const Error& e) {
    cached.refusal = e.what();
  }
  return cached;
}

class SdpaRunner {
 public:
  // The plan for these tensors, built on first sight; null with `refusal` set when
  // cuDNN cannot run them.
  const Plan* plan_for(const Tensor& q, const Tensor& k, const Tensor& v, std::string* refusal) {
    const PlanKey key{q.device().index, q.dtype(), q.size(0), q.size(2), k.size(2),
                      q.size(1),        k.size(1), q.size(3), v.size(3)};
    std::lock_guard lock(mutex_);
    auto found = plans_.find(key);
    if (found == plans_.end()) {
      DeviceGuard guard(key.device);
      found = plans_.emplace(key, build_plan(key, handle_locked(key.device))).first;
    }
    if (refusal != nullptr) *refusal = found->second.refusal;
    return found->second.plan.get();
  }

  // The device's handle, bound to its stream.
  cudnnHandle_t handle(int device) {
    std::lock_guard lock(mutex_);
    return handle_locked(device);
  }

 private:
  cudnnHandle_t handle_locked(int device) {
    cudnnHandle_t& h = handles_[device];
    if (h == nullptr) {
      DeviceGuard guard(device);
      FASTDIT_CUDNN_CHECK(cudnnCreate(&h));
      FASTDIT_CUDNN_CHECK(cudnnSetStream(h, current_stream(device)));
    }
    return h;
  }

  std::mutex mutex_;
  std::map<int, cudnnHandle_t> handles_;
  std::map<PlanKey, CachedPlan> plans_;
};

SdpaRunner& runner() {
  static auto* instance = new SdpaRunner();  // leaked: cuDNN may be unloaded before exit
  return *instance;
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

}  // namespace

std::string cudnn_sdpa_refusal(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& mask) {
  const size_t version = cudnnGetVersion();
  if (version < kMinCudnnVersion) {
    return fastdit::detail::concat("the cuDNN library loaded is ", version, "; fused SDPA needs ",
                                   kMinCudnnVersion, " or newer");
  }
  if (q.dtype() != DType::BFloat16 && q.dtype() != DType::Float16) {
    return fastdit::detail::concat("cuDNN SDPA takes bfloat16 or float16, not ",
                                   dtype_name(q.dtype()));
  }
  if (mask.defined()) return "cuDNN SDPA here takes no mask";
  const int64_t d = q.size(3), dv = v.size(3);
  if (d % 8 != 0 || dv % 8 != 0 || d > 256 || dv > 256) {
    return fastdit::detail::concat(
        "cuDNN SDPA needs head dims that are multiples of 8 up to 256, got ", d, " and ", dv);
  }
  if (!aligned16(q) || !aligned16(k) || !aligned16(v)) return "q, k and v must be 16-byte aligned";
  if (q.numel() == 0 || k.size(1) == 0) return {};  // nothing for cuDNN to run
  std::string refusal;
  runner().plan_for(q, k, v, &refusal);
  return refusal;
}

void cudnn_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor& out) {
  FASTDIT_CHECK(reinterpret_cast<uintptr_t>(out.data_ptr()) % 16 == 0,
                "cuDNN SDPA: out must be 16-byte aligned");
  std::string refusal;
  const Plan* plan = runner().plan_for(q, k, v, &refusal);
  FASTDIT_CHECK(plan != nullptr, "cuDNN SDPA: ", refusal);
  const int device = out.device().index;
  DeviceGuard guard(device);
  const Tensor workspace =
      Tensor::empty({std::max<int64_t>(plan->workspace_bytes, 1)}, DType::UInt8, out.device());
  const int64_t uids[5] = {kUidQ, kUidK, kUidV, kUidO, kUidScale};
  void* pointers[5] = {q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), &scale};
  void* workspace_pointer = workspace.data_ptr();
  Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 5, uids);
  pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 5, pointers);
  pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace_pointer);
  pack.finalize();
  FASTDIT_CUDNN_CHECK(
      cudnnBackendExecute(runner().handle(device), plan->execution_plan->get(), pack.get()));
}

}  // namespace fastdit::cuda
