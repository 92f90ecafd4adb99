// Which attention backend serves a call. FASTDIT_ATTENTION_BACKEND names one explicitly,
// and then it serves or the call is an error (never a silent fallback); otherwise the
// fastest that can serve wins: cuDNN, then our flash kernel, then the reference kernel —
// except where our Hopper kernel is measured faster than cuDNN (head dim 128 over at least
// kOwnKernelKeys keys: 661 vs 599 TFLOP/s at Wan 480p's 32,760 tokens, 667 vs 626 at
// 8,190, while at 4,608 cuDNN leads 649 to 627; H100, bench/notes/flash.md).
#include "backends/cuda/attention.h"

#include <cstdlib>
#include <optional>
#include <string_view>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"

namespace fastdit::cuda {
namespace {

constexpr int64_t kOwnKernelKeys = 8192;

bool own_kernel_is_faster(const Tensor& q, const Tensor& k, const Tensor& v, float scale) {
  return q.size(3) == 128 && k.size(1) >= kOwnKernelKeys && flash_attention_sm90_serves(q, k, v, scale);
}

std::optional<AttentionBackend> backend_from_env() {
  const char* value = std::getenv("FASTDIT_ATTENTION_BACKEND");
  if (value == nullptr || *value == '\0') return std::nullopt;
  const std::string_view name(value);
  for (AttentionBackend backend :
       {AttentionBackend::Cudnn, AttentionBackend::Flash, AttentionBackend::Reference}) {
    if (name == attention_backend_name(backend)) return backend;
  }
  FASTDIT_FAIL("FASTDIT_ATTENTION_BACKEND=", name, " is not one of cudnn, flash, reference");
}

std::string refusal(AttentionBackend backend, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& mask) {
  switch (backend) {
    case AttentionBackend::Cudnn: return cudnn_sdpa_refusal(q, k, v, mask);
    case AttentionBackend::Flash: return flash_attention_refusal(q, k, v, mask);
    case AttentionBackend::Reference: return {};
  }
  return {};
}

std::string describe(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask) {
  return fastdit::detail::concat("q ", q.str(), ", k ", shape_str(k.shape()), ", v ",
                                 shape_str(v.shape()), mask.defined() ? ", with a mask" : "");
}

}  // namespace

const char* attention_backend_name(AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::Cudnn: return "cudnn";
    case AttentionBackend::Flash: return "flash";
    case AttentionBackend::Reference: return "reference";
  }
  return "unknown";
}

AttentionBackend select_attention_backend(const Tensor& q, const Tensor& k, const Tensor& v,
                                          const Tensor& mask, float scale) {
  if (const auto requested = backend_from_env()) {
    const std::string why = refusal(*requested, q, k, v, mask);
    FASTDIT_CHECK(why.empty(), "FASTDIT_ATTENTION_BACKEND=", attention_backend_name(*requested),
                  " cannot serve attention on ", describe(q, k, v, mask), ": ", why);
    return *requested;
  }
  if (!mask.defined() && own_kernel_is_faster(q, k, v, scale) &&
      refusal(AttentionBackend::Flash, q, k, v, mask).empty())
    return AttentionBackend::Flash;
  for (AttentionBackend backend : {AttentionBackend::Cudnn, AttentionBackend::Flash}) {
    if (refusal(backend, q, k, v, mask).empty()) return backend;
  }
  return AttentionBackend::Reference;
}

void attention_with(AttentionBackend backend, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& mask, float scale, Tensor& out) {
  const std::string why = refusal(backend, q, k, v, mask);
  FASTDIT_CHECK(why.empty(), "attention backend ", attention_backend_name(backend),
                " cannot serve ", describe(q, k, v, mask), ": ", why);
  if (out.numel() == 0) return;
  if (k.size(1) == 0) {  // no keys: every output row is empty, as on the CPU
    device_hooks(DeviceType::CUDA).fill_zero(out.data_ptr(), out.nbytes(), out.device().index);
    return;
  }
  switch (backend) {
    case AttentionBackend::Cudnn: return cudnn_sdpa(q, k, v, scale, out);
    case AttentionBackend::Flash: return flash_attention(q, k, v, scale, out, mask);
    case AttentionBackend::Reference: return reference_attention(q, k, v, mask, scale, out);
  }
}

void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, float scale,
               Tensor& out) {
  attention_with(select_attention_backend(q, k, v, mask, scale), q, k, v, mask, scale, out);
}

}  // namespace fastdit::cuda
