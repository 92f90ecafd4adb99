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
};

TEST(CudaBench, AttentionThroughput) {
  const AttentionBench shapes[] = {{"Flux 1024^2", 1, 24, 4608, 128},
                                   {"SD3.5-L 1024^2", 1, 38, 4429, 64},
                                   {"DiT-XL 512^2", 8, 16, 1024, 72},
                                   {"Wan 480p/4", 1, 40, 8190, 128},
                                   {"Wan 1.3B 480p", 1, 12, 32760, 128}};
  for (const auto& s : shapes) {
    const Shape shape{s.batch, s.seq, s.heads, s.head_dim};
    const Tensor q = random_gpu(shape, 1), k = random_gpu(shape, 2), v = random_gpu(shape, 3);
    Tensor out = Tensor::empty(shape, DType::BFloat16, kGpu);
    const double flops = 4.0 * s.batch * s.heads * double(s.seq) * s.seq * s.head_dim;
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
  const Gemm shapes[] = {{"Flux MLP up", 4608, 3072, 12288}, {"Flux MLP down", 4608, 12288, 3072}};
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

}  // namespace
}  // namespace fastdit
