// conv3d_patch and timestep_embedding.
//
// conv3d_patch: a stride == kernel convolution is a GEMM over non-overlapping patches. A
// gather kernel (one thread per patch element) writes every patch of a batch item as one
// row in (c, kt, kh, kw) order — the weight's own layout — into patches [B, L, P]; then
// per batch item out[b] [O, L] = weight [O, P] · patches[b] [L, P]ᵀ on cuBLASLt, which is
// already the [O, T', H', W'] output layout. The bias runs along O (the GEMM's rows, not
// the epilogue's columns), so it is one broadcast add afterwards.
//
// timestep_embedding: one thread per (timestep, frequency), the float32 operation order
// of diffusers' get_timestep_embedding (and of the CPU kernel), frequencies from the host,
// uploaded once per table: a forward then holds no host copy, so it can be captured into
// a CUDA graph.
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/kernel_common.cuh"

namespace fastdit::cuda {
namespace {

struct PatchShape {
  int64_t channels, frames, height, width;  // x
  int64_t kt, kh, kw;                       // kernel
  int64_t pt, ph, pw;                       // patches along each axis
};

template <class T>
__global__ void gather_patches(const T* x, T* patches, PatchShape s, int64_t total) {
  const int64_t patch_size = s.channels * s.kt * s.kh * s.kw;
  const int64_t patches_per_item = s.pt * s.ph * s.pw;
  for (int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const int64_t element = i % patch_size, row = i / patch_size;
    const int64_t b = row / patches_per_item, patch = row % patches_per_item;
    const int64_t w = element % s.kw, h = element / s.kw % s.kh, t = element / (s.kw * s.kh) % s.kt;
    const int64_t c = element / (s.kw * s.kh * s.kt);
    const int64_t t0 = patch / (s.ph * s.pw) * s.kt, h0 = patch / s.pw % s.ph * s.kh,
                  w0 = patch % s.pw * s.kw;
    patches[i] =
        x[(((b * s.channels + c) * s.frames + t0 + t) * s.height + h0 + h) * s.width + w0 + w];
  }
}

template <class T>
void launch_gather(const Tensor& x, Tensor& patches, const PatchShape& s, cudaStream_t stream) {
  const int64_t total = patches.numel();
  gather_patches<T><<<grid_for(total), kThreadsPerBlock, 0, stream>>>(
      static_cast<const T*>(x.data_ptr()), static_cast<T*>(patches.data_ptr()), s, total);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

__global__ void timestep_frequencies(const float* t, const float* frequencies, float* out,
                                     int64_t n, int64_t dim, int64_t sin_column, int64_t cos_column,
                                     float scale) {
  const int64_t half = dim / 2;
  for (int64_t i = global_thread_index(); i < n * half; i += global_thread_count()) {
    const int64_t row = i / half, k = i % half;
    const float angle = scale * (t[row] * frequencies[k]);
    out[row * dim + sin_column + k] = sinf(angle);
    out[row * dim + cos_column + k] = cosf(angle);
  }
}

}  // namespace

void conv3d_patch(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  if (out.numel() == 0) return;
  const PatchShape s{x.size(1),      x.size(2),      x.size(3),   x.size(4),   weight.size(2),
                     weight.size(3), weight.size(4), out.size(2), out.size(3), out.size(4)};
  const int64_t batch = x.size(0), out_channels = weight.size(0);
  const int64_t patches_per_item = s.pt * s.ph * s.pw, patch_size = s.channels * s.kt * s.kh * s.kw;
  const Tensor w = weight.dtype() == x.dtype() ? weight : weight.to(x.dtype());
  Tensor patches = Tensor::empty({batch, patches_per_item, patch_size}, x.dtype(), x.device());
  DeviceGuard guard(x.device());
  const cudaStream_t stream = current_stream(x.device().index);
  switch (x.dtype()) {
    case DType::Float32: launch_gather<float>(x, patches, s, stream); break;
    case DType::BFloat16: launch_gather<__nv_bfloat16>(x, patches, s, stream); break;
    default: launch_gather<__half>(x, patches, s, stream); break;
  }
  const int64_t item_elements = patches_per_item * patch_size,
                out_elements = out_channels * patches_per_item;
  for (int64_t b = 0; b < batch; ++b) {
    const GemmOperands operands{
        w.data_ptr(),
        static_cast<const char*>(patches.data_ptr()) + b * item_elements * patches.element_size(),
        static_cast<char*>(out.data_ptr()) + b * out_elements * out.element_size(),
        nullptr,
        x.dtype(),
        x.dtype(),
        out_channels,
        patches_per_item,
        patch_size,
        x.device().index};
    gemm_xwt(operands, GemmEpilogue::None);
  }
  if (bias.defined()) {
    Tensor planes = out.reshape({batch, out_channels, patches_per_item});
    add(planes, bias.reshape({out_channels, 1}), planes);
  }
}

namespace {

// The frequencies exp(-ln(max_period) k / (half - shift)), k < half, on `device`: the
// host's exp, as on the CPU (at t ~ 1000 one ulp of a frequency moves the angle by ~1e-4,
// more than the tolerance). Kept for the process: a captured graph reads them on replay.
const Tensor& timestep_frequencies_on(Device device, int64_t half, float max_period,
                                      float downscale_freq_shift) {
  using Key = std::tuple<int, int64_t, float, float>;
  static auto* tables = new std::map<Key, Tensor>();  // leaked, like the other device state
  static auto* mutex = new std::mutex();
  std::lock_guard lock(*mutex);
  Tensor& table = (*tables)[Key{device.index, half, max_period, downscale_freq_shift}];
  if (!table.defined()) {
    const float neg_log_max_period = static_cast<float>(-std::log(static_cast<double>(max_period)));
    const float denominator = static_cast<float>(half) - downscale_freq_shift;
    std::vector<float> frequencies(static_cast<size_t>(half));
    for (int64_t k = 0; k < half; ++k) {
      frequencies[k] = std::exp(neg_log_max_period * static_cast<float>(k) / denominator);
    }
    table = Tensor::from_vector(frequencies, {half}).to(device);
  }
  return table;
}

}  // namespace

void timestep_embedding(const Tensor& t, bool flip_sin_to_cos, float downscale_freq_shift,
                        float scale, float max_period, Tensor& out) {
  const int64_t n = out.size(0), dim = out.size(1), half = dim / 2;
  if (n == 0) return;
  const Tensor t32 = t.to(DType::Float32);
  DeviceGuard guard(out.device());
  const cudaStream_t stream = current_stream(out.device().index);
  if (dim % 2 == 1) {
    FASTDIT_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), stream));
  }
  if (half == 0) return;
  const Tensor& frequencies = timestep_frequencies_on(out.device(), half, max_period, downscale_freq_shift);
  timestep_frequencies<<<grid_for(n * half), kThreadsPerBlock, 0, stream>>>(
      t32.data<float>(), frequencies.data<float>(), out.data<float>(), n, dim,
      flip_sin_to_cos ? half : 0, flip_sin_to_cos ? 0 : half, scale);
  FASTDIT_CUDA_CHECK_LAUNCH();
}

}  // namespace fastdit::cuda
