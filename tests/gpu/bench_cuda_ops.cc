// Throughput of the attention backends and the cuBLASLt GEMMs on DiT-sized shapes,
// printed, not checked: CUDA events around each call on the backend's stream, median of
// 10 timed calls after 3 warm-ups, random inputs (zeros can run faster than real data).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "backends/cuda/attention.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

const Device kGpu = Device::cuda(0);

Tensor random_gpu(const Shape& shape, uint64_t seed) {
  return testing::random_tensor(shape, seed).to(DType::BFloat16).to(kGpu);
}

double median_ms(const std::function<void()>& call) {
  const cudaStream_t stream = cuda::current_stream(0);
  for (int i = 0; i < 3; ++i) call();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> times;
  for (int i = 0; i < 10; ++i) {
    cudaEventRecord(start, stream);
    call();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::nth_element(times.begin(), times.begin() + 5, times.end());
  return times[5];
}

struct AttentionBench {
  const char* name;
  int64_t batch, heads, seq, head_dim;
  int64_t keys = 0;  // 0: self-attention (keys = seq); else cross-attention to this many
};

TEST(CudaBench, AttentionThroughput) {
  const AttentionBench shapes[] = {{"Flux 1024^2", 1, 24, 4608, 128},
                                   {"SD3.5-L 1024^2", 1, 38, 4429, 64},
                                   {"DiT-XL 512^2", 8, 16, 1024, 72},
                                   {"Wan 480p/4", 1, 40, 8190, 128},
                                   {"Wan 1.3B 480p", 1, 12, 32760, 128},
                                   {"Wan 14B 480p", 1, 40, 32760, 128},
                                   {"Wan 1.3B text", 1, 12, 32760, 128, 512},
                                   {"Wan 14B text", 1, 40, 32760, 128, 512}};
  for (const auto& s : shapes) {
    const int64_t keys = s.keys > 0 ? s.keys : s.seq;
    const Shape shape{s.batch, s.seq, s.heads, s.head_dim}, kv_shape{s.batch, keys, s.heads, s.head_dim};
    const Tensor q = random_gpu(shape, 1), k = random_gpu(kv_shape, 2), v = random_gpu(kv_shape, 3);
    Tensor out = Tensor::empty(shape, DType::BFloat16, kGpu);
    const double flops = 4.0 * s.batch * s.heads * double(s.seq) * keys * s.head_dim;
    for (auto backend : {cuda::AttentionBackend::Cudnn, cuda::AttentionBackend::Flash}) {
      const std::string why = backend == cuda::AttentionBackend::Cudnn
                                  ? cuda::cudnn_sdpa_refusal(q, k, v, {})
                                  : cuda::flash_attention_refusal(q, k, v, {});
      if (!why.empty()) {
        std::printf("attention %-15s %-6s refused: %s\n", s.name,
                    cuda::attention_backend_name(backend), why.c_str());
        continue;
      }
      const double ms = median_ms([&] { cuda::attention_with(backend, q, k, v, {}, 0.1f, out); });
      std::printf("attention %-15s %-6s %8.3f ms %6.0f TFLOP/s\n", s.name,
                  cuda::attention_backend_name(backend), ms, flops / ms * 1e-9);
    }
  }
}

TEST(CudaBench, GemmThroughput) {
  struct Gemm {
    const char* name;
    int64_t tokens, in, out;
  };
  // Wan 1.3B's FFN over all 32,760 tokens and over the half-sequence pieces the block runs it in.
  const Gemm shapes[] = {{"Flux MLP up", 4608, 3072, 12288},   {"Flux MLP down", 4608, 12288, 3072},
                         {"Wan FFN up", 32760, 1536, 8960},    {"Wan FFN up/2", 16380, 1536, 8960},
                         {"Wan FFN down", 32760, 8960, 1536},  {"Wan FFN down/2", 16380, 8960, 1536}};
  for (const auto& g : shapes) {
    const Tensor x = random_gpu({g.tokens, g.in}, 4), w = random_gpu({g.out, g.in}, 5);
    const Tensor b = random_gpu({g.out}, 6);
    Tensor y = Tensor::empty({g.tokens, g.out}, DType::BFloat16, kGpu);
    const double flops = 2.0 * g.tokens * double(g.in) * g.out;
    const double plain = median_ms([&] { cuda::linear(x, w, b, y); });
    const double gelu = median_ms([&] { cuda::linear_gelu_tanh(x, w, b, y); });
    std::printf("linear %-14s bf16+bias %6.0f TFLOP/s   +gelu_tanh %6.0f TFLOP/s\n", g.name,
                flops / plain * 1e-9, flops / gelu * 1e-9);
  }
}

// The memory-bound kernels of a DiT block at Wan's shapes (32,760 tokens of bfloat16):
// GB/s counting each byte of the token-sized tensors read and written once (the per-row
// vectors, weights and modulation, stay in cache and are not counted; the rotary table is).
// A device-to-device copy of one hidden state gives the attainable bandwidth.
TEST(CudaBench, RowKernelBandwidth) {
  const int64_t tokens = 32760, head_dim = 128;
  const Tensor cos = testing::random_tensor({tokens, head_dim}, 7).to(kGpu);
  const Tensor sin = testing::random_tensor({tokens, head_dim}, 8).to(kGpu);
  const auto f32_gpu = [](const Shape& shape, uint64_t seed) { return testing::random_tensor(shape, seed).to(kGpu); };
  for (const int64_t dim : {int64_t{1536}, int64_t{5120}}) {
    const Shape shape{1, tokens, dim};
    const Tensor x = random_gpu(shape, 10), y = random_gpu(shape, 11), qkv = random_gpu({1, tokens, 3 * dim}, 12);
    const Tensor shift = f32_gpu({1, 1, dim}, 13), scale = f32_gpu({1, 1, dim}, 14), gate = f32_gpu({1, 1, dim}, 15);
    const Tensor w = f32_gpu({dim}, 16), b = f32_gpu({dim}, 17), norm_w = random_gpu({dim}, 18);
    Tensor out = Tensor::empty(shape, DType::BFloat16, kGpu), sum = Tensor::empty(shape, DType::BFloat16, kGpu);
    const Shape heads{1, tokens, dim / head_dim, head_dim};
    Tensor q = Tensor::empty(heads, DType::BFloat16, kGpu), k = Tensor::empty(heads, DType::BFloat16, kGpu),
           v = Tensor::empty(heads, DType::BFloat16, kGpu);
    const Tensor channels_first = random_gpu({1, dim, tokens}, 19).transpose(1, 2);
    const double stream = static_cast<double>(x.nbytes());
    const auto report = [&](const char* kernel, double streams, double extra_bytes, const std::function<void()>& call) {
      const double ms = median_ms(call), bytes = streams * stream + extra_bytes;
      std::printf("bandwidth D=%-5lld %-34s %7.3f ms %6.0f GB/s (%3.0f%% of 3.0 TB/s)\n", static_cast<long long>(dim),
                  kernel, ms, bytes / ms * 1e-6, bytes / ms * 1e-6 / 30.0);
    };
    const cudaStream_t s = cuda::current_stream(0);
    report("copy (device to device)", 2, 0,
           [&] { cudaMemcpyAsync(out.data_ptr(), x.data_ptr(), x.nbytes(), cudaMemcpyDeviceToDevice, s); });
    report("layer_norm_modulate", 2, 0, [&] { cuda::layer_norm_modulate(x, shift, scale, 1e-6f, out); });
    report("layer_norm (affine)", 2, 0, [&] { cuda::layer_norm(x, w, b, 1e-6f, out); });
    report("rms_norm", 2, 0, [&] { cuda::rms_norm(x, norm_w, 1e-6f, out); });
    report("gated_add (float32 gate)", 3, 0, [&] { cuda::gated_add(x, y, gate, out); });
    report("add", 3, 0, [&] { cuda::add(x, y, out); });
    report("add_layer_norm (gated, affine)", 4, 0,
           [&] { cuda::add_layer_norm(x, y, gate, w, b, {}, {}, 1e-6f, sum, out); });
    report("add_layer_norm (modulated)", 4, 0,
           [&] { cuda::add_layer_norm(x, y, {}, {}, {}, shift, scale, 1e-6f, sum, out); });
    report("qkv_norm_rope", 6, static_cast<double>(cos.nbytes() + sin.nbytes()), [&] {
      cuda::qkv_norm_rope(qkv, norm_w, norm_w, 1e-6f, cos, sin, ops::RopeStyle::Interleaved, q, k, v);
    });
    report("transpose [D, L] -> [L, D] (patchify)", 2, 0, [&] { out.copy_(channels_first); });
  }
}

}  // namespace
}  // namespace fastdit
