// The CUDA device beyond the op vocabulary (tests/ops/backend_ops.cc checks every op on
// CUDA against the CPU): the caching allocator and its NaN poisoning, copies and dtype
// conversions done by Tensor itself, the attention backend choice and refusals, and the
// flash kernel against the reference kernel on sequences too long for the CPU oracle.
// Tolerances: float32 max |gpu − cpu| <= 1e-5 · max(1, max |cpu|) (TF32 is never used);
// bfloat16 / float16 rel_l2 <= 1e-2 and max |gpu − cpu| <= 2e-2 · max |cpu|.
#include <cudnn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cuda/attention.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "core/half.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

using testing::random_tensor;

const Device kGpu = Device::cuda(0);
constexpr DType kFloatTypes[] = {DType::Float32, DType::BFloat16, DType::Float16};

Tensor random_in(DType dtype, const Shape& shape, uint64_t seed, float lo = -1.0f,
                 float hi = 1.0f) {
  return random_tensor(shape, seed, lo, hi).to(dtype);
}

Tensor on_gpu(const Tensor& t) { return t.defined() ? t.to(kGpu) : t; }
template <class T>
const T& on_gpu(const T& value) {
  return value;
}

// All-ones bits: NaN in float32, bfloat16 and float16.
Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype, kGpu);
  EXPECT_EQ(cudaMemsetAsync(t.data_ptr(), 0xff, t.nbytes(), cuda::current_stream(0)), cudaSuccess);
  return t;
}

struct Comparison {
  double max_abs = 0, max_ref = 0, rel_l2 = 0;
};

Comparison compare(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  const std::vector<float> got = gpu.to_float_vector(), want = cpu.to_float_vector();
  Comparison c;
  EXPECT_EQ(got.size(), want.size()) << what;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    if (!std::isfinite(got[i])) {
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << " (expected " << want[i]
                    << ")";
      return c;
    }
    const double diff = std::fabs(double(got[i]) - want[i]);
    c.max_abs = std::max(c.max_abs, diff);
    c.max_ref = std::max(c.max_ref, std::fabs(double(want[i])));
    num += diff * diff;
    den += double(want[i]) * want[i];
  }
  c.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return c;
}

Comparison expect_matches(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  const Comparison c = compare(gpu, cpu, what);
  if (gpu.dtype() == DType::Float32) {
    EXPECT_LE(c.max_abs, 1e-5 * std::max(1.0, c.max_ref)) << what;
  } else {
    EXPECT_LE(c.rel_l2, 1e-2) << what;
    EXPECT_LE(c.max_abs, 2e-2 * std::max(c.max_ref, 1e-3)) << what;
  }
  return c;
}

// ---- device: allocator and copies ---------------------------------------------------------

TEST(CudaAllocator, ReusesFreedBlocksAndRoundsSizes) {
  { const Tensor warm = Tensor::empty({1 << 20}, DType::Float32, kGpu); }
  const cuda::MemoryStats before = cuda::cuda_memory_stats(0);
  {
    const Tensor again = Tensor::empty({1 << 20}, DType::Float32, kGpu);  // 4 MiB, same bucket
    const cuda::MemoryStats during = cuda::cuda_memory_stats(0);
    EXPECT_EQ(during.reserved_bytes, before.reserved_bytes);
    EXPECT_EQ(during.allocated_bytes, before.allocated_bytes + (size_t{4} << 20));
  }
  {
    const Tensor small = Tensor::empty({1000}, DType::UInt8, kGpu);
    EXPECT_EQ(cuda::cuda_memory_stats(0).allocated_bytes, before.allocated_bytes + 1024);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(small.data_ptr()) % 512, 0u);
  }
  const cuda::MemoryStats after = cuda::cuda_memory_stats(0);
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
  EXPECT_GE(after.peak_allocated_bytes, before.allocated_bytes + (size_t{4} << 20));
  cuda::empty_cache();
  EXPECT_EQ(cuda::cuda_memory_stats(0).reserved_bytes, after.allocated_bytes);
}

// What the op harness relies on: with poisoning on, a new tensor reads as NaN everywhere,
// a reused block too; with it off, nothing is written.
TEST(CudaAllocator, PoisonFillsNewAllocationsWithNaN) {
  cuda::set_allocation_poison(true);
  for (DType dtype : kFloatTypes) {
    for (int round = 0; round < 2; ++round) {  // the second round reuses the cached block
      const Tensor t = Tensor::empty({1000}, dtype, kGpu);
      for (float v : t.to_float_vector()) ASSERT_TRUE(std::isnan(v)) << dtype_name(dtype);
    }
  }
  cuda::set_allocation_poison(false);
  const Tensor zeros = Tensor::zeros({1000}, DType::Float32, kGpu);
  for (float v : zeros.to_float_vector()) ASSERT_EQ(v, 0.0f);
}

TEST(CudaCopy, FloatConversionsRoundLikeTheCpu) {
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               1.00390625f,
                               1.01171875f,
                               65504.0f,
                               65520.0f,
                               1e-8f,
                               -3.0e-39f,
                               1e30f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity()};
  const Tensor noise = random_tensor({1000}, 7, -100.0f, 100.0f);
  for (float v : noise.to_float_vector()) values.push_back(v);
  const Tensor source = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  for (DType low : {DType::BFloat16, DType::Float16}) {
    const Tensor on_device = source.to(kGpu).to(low);
    const Tensor expected = source.to(low), got = on_device.to(Device::cpu());
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_EQ(got.data<uint16_t>()[i], expected.data<uint16_t>()[i])
          << dtype_name(low) << " of " << values[i];
    }
    const Tensor back = on_device.to(DType::Float32).to(Device::cpu());
    EXPECT_EQ(back.to_float_vector(), expected.to(DType::Float32).to_float_vector());
  }
}

TEST(CudaCopy, StridedGatherWithAndWithoutConversion) {
  const Tensor base = random_tensor({3, 4, 5, 6}, 3);
  const Tensor permuted = base.permute({2, 0, 3, 1}).narrow(1, 1, 2);
  const Tensor gpu = base.to(kGpu).permute({2, 0, 3, 1}).narrow(1, 1, 2);
  ASSERT_FALSE(gpu.is_contiguous());
  EXPECT_EQ(gpu.contiguous().to_float_vector(), permuted.contiguous().to_float_vector());
  EXPECT_EQ(gpu.to(DType::BFloat16).to_float_vector(),
            permuted.to(DType::BFloat16).to_float_vector());
  // Eight dims that cannot merge.
  const Tensor eight = random_tensor({2, 3, 2, 3, 2, 3, 2, 3}, 4);
  const Tensor reversed = eight.permute({7, 6, 5, 4, 3, 2, 1, 0});
  EXPECT_EQ(eight.to(kGpu).permute({7, 6, 5, 4, 3, 2, 1, 0}).contiguous().to_float_vector(),
            reversed.contiguous().to_float_vector());
}

// Permutes that keep whole 16-byte rows move as vectors (sequence parallelism's peer-major
// packing); rows that are not whole vectors, or a start off 16 bytes, take the element path.
TEST(CudaCopy, RowPreservingPermutesInEveryDtypeAndAlignment) {
  for (DType dtype : kFloatTypes) {
    for (int64_t row : {64, 36, 8}) {  // bf16: 128, 72, 16 bytes; f32: 256, 144, 32 bytes
      const Tensor base = random_tensor({3, 40, 2, 5, row}, 20 + row).to(dtype);
      const Tensor gpu = base.to(kGpu);
      for (int64_t first : {0, 1}) {  // narrow by one row of 5: shifts the start by row elements
        const Tensor want = base.permute({2, 0, 1, 3, 4}).narrow(3, first, 4).contiguous();
        Tensor got = gpu.permute({2, 0, 1, 3, 4}).narrow(3, first, 4).contiguous();
        EXPECT_EQ(got.to_float_vector(), want.to_float_vector()) << dtype_name(dtype) << " row " << row;
      }
      // Rows one element short, starting one element in: never whole 16-byte vectors.
      EXPECT_EQ(gpu.permute({2, 0, 1, 3, 4}).narrow(4, 1, row - 1).contiguous().to_float_vector(),
                base.permute({2, 0, 1, 3, 4}).narrow(4, 1, row - 1).contiguous().to_float_vector());
    }
  }
}

// Sources contiguous along the output's rows take the tiled transpose: sizes that are
// not multiples of its 32x32 tile, a batch dim, with and without a conversion.
TEST(CudaCopy, TransposesThroughTiles) {
  for (const Shape& shape : {Shape{45, 70}, Shape{3, 70, 45}, Shape{1, 1536, 1000}}) {
    const Tensor base = random_tensor(shape, 5);
    const int64_t last = static_cast<int64_t>(shape.size()) - 1;
    const Tensor expected = base.transpose(last - 1, last).contiguous();
    const Tensor gpu = base.to(kGpu).transpose(last - 1, last);
    EXPECT_EQ(gpu.contiguous().to_float_vector(), expected.to_float_vector()) << shape_str(shape);
    EXPECT_EQ(gpu.to(DType::BFloat16).to_float_vector(), expected.to(DType::BFloat16).to_float_vector())
        << shape_str(shape);
    const Tensor half = base.to(DType::Float16);
    EXPECT_EQ(half.to(kGpu).transpose(last - 1, last).contiguous().to_float_vector(),
              half.transpose(last - 1, last).contiguous().to_float_vector())
        << shape_str(shape);
  }
}

TEST(CudaCopy, IntegersCopyAndConvert) {
  const Tensor ints = Tensor::from_vector<int64_t>({1, -2, 3, 1LL << 40, 5, 6}, {2, 3});
  const Tensor gpu = ints.to(kGpu);
  const Tensor transposed = gpu.transpose(0, 1).contiguous().to(Device::cpu());
  const int64_t expected[] = {1, 1LL << 40, -2, 5, 3, 6};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(transposed.data<int64_t>()[i], expected[i]);
  EXPECT_EQ(gpu.to(DType::Float32).to_float_vector(), ints.to(DType::Float32).to_float_vector());
  EXPECT_EQ(Tensor::zeros({5}, DType::Float32, kGpu).to_float_vector(),
            std::vector<float>(5, 0.0f));
}

// ---- linear --------------------------------------------------------------------------------

// ---- attention -----------------------------------------------------------------------------

struct AttentionShape {
  int64_t batch, heads, q_len, kv_len, head_dim, value_dim;
  int64_t kv_heads = 0;  // grouped K/V heads; 0 = as many as query heads
  int64_t kv() const { return kv_heads > 0 ? kv_heads : heads; }
};

std::string describe(const AttentionShape& s) {
  return detail::concat("B", s.batch, " H", s.heads, s.kv_heads > 0 ? " Hkv" + std::to_string(s.kv_heads) : "",
                        " Sq", s.q_len, " Sk", s.kv_len, " D", s.head_dim, " Dv", s.value_dim);
}

// Queries in [-4, 4] make the softmax peaked, so a wrong key or a wrong scale shows. The
// scale is 1/sqrt(D) times `scale_factor`.
void check_attention(cuda::AttentionBackend backend, DType dtype, const AttentionShape& s,
                     uint64_t seed, const Tensor& mask = {}, float scale_factor = 1.0f) {
  const Tensor q = random_in(dtype, {s.batch, s.q_len, s.heads, s.head_dim}, seed, -4.0f, 4.0f);
  const Tensor k = random_in(dtype, {s.batch, s.kv_len, s.kv(), s.head_dim}, seed + 1);
  const Tensor v = random_in(dtype, {s.batch, s.kv_len, s.kv(), s.value_dim}, seed + 2);
  const float scale = scale_factor / std::sqrt(static_cast<float>(s.head_dim));
  const Shape out_shape{s.batch, s.q_len, s.heads, s.value_dim};
  Tensor cpu_out = Tensor::empty(out_shape, dtype), gpu_out = poisoned(out_shape, dtype);
  cpu::attention(q, k, v, mask, scale, cpu_out);
  cuda::attention_with(backend, on_gpu(q), on_gpu(k), on_gpu(v), on_gpu(mask), scale, gpu_out);
  const std::string what = std::string(cuda::attention_backend_name(backend)) + " " +
                           dtype_name(dtype) + " " + describe(s) +
                           (mask.defined() ? " masked" : "") +
                           (scale_factor != 1.0f ? " scale x" + std::to_string(scale_factor) : "");
  const Comparison c = expect_matches(gpu_out, cpu_out, what);
  std::printf("attention %-34s max_abs %.2e rel_l2 %.2e (max |ref| %.2f)\n", what.c_str(),
              c.max_abs, c.rel_l2, c.max_ref);
}

TEST(CudaAttention, FlashMatchesReferenceOnLongSequences) {
  const AttentionShape shapes[] = {{1, 4, 4100, 4100, 128, 128}, {2, 2, 3000, 2500, 64, 64}};
  uint64_t seed = 3900;
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    for (const AttentionShape& s : shapes) {
      seed += 3;
      const Tensor q =
          random_in(dtype, {s.batch, s.q_len, s.heads, s.head_dim}, seed, -4.0f, 4.0f).to(kGpu);
      const Tensor k =
          random_in(dtype, {s.batch, s.kv_len, s.heads, s.head_dim}, seed + 1).to(kGpu);
      const Tensor v =
          random_in(dtype, {s.batch, s.kv_len, s.heads, s.value_dim}, seed + 2).to(kGpu);
      const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
      const Shape out_shape{s.batch, s.q_len, s.heads, s.value_dim};
      Tensor flash = poisoned(out_shape, dtype), reference = poisoned(out_shape, dtype);
      cuda::attention_with(cuda::AttentionBackend::Flash, q, k, v, {}, scale, flash);
      cuda::attention_with(cuda::AttentionBackend::Reference, q, k, v, {}, scale, reference);
      const std::string what = std::string("flash vs reference ") + dtype_name(dtype) + " " +
                               describe(s);
      const Comparison c = expect_matches(flash, reference, what);
      std::printf("attention %-34s max_abs %.2e rel_l2 %.2e (max |ref| %.2f)\n", what.c_str(),
                  c.max_abs, c.rel_l2, c.max_ref);
    }
  }
}


// Grouped K/V heads (query head h reads K/V head h / (H / Hkv)): Stable Audio's
// cross-attention (24 heads over 12, 1025 queries, 130 keys), factors 4 and 8, tile edges.
const AttentionShape kGroupedShapes[] = {{2, 24, 1025, 130, 64, 64, 12}, {1, 8, 37, 100, 64, 64, 2},
                                         {2, 4, 70, 65, 8, 8, 1},        {1, 8, 129, 200, 128, 128, 4}};


// cuDNN either runs grouped heads (and then matches the CPU) or refuses them, and then the
// selection falls to the flash kernel, never to a wrong answer.
TEST(CudaAttention, GroupedKeyValueHeadsCudnnOrFlash) {
  uint64_t seed = 4600;
  for (const auto& s : kGroupedShapes) {
    const Tensor q = Tensor::empty({s.batch, s.q_len, s.heads, s.head_dim}, DType::BFloat16, kGpu);
    const Tensor k = Tensor::empty({s.batch, s.kv_len, s.kv(), s.head_dim}, DType::BFloat16, kGpu);
    const Tensor v = Tensor::empty({s.batch, s.kv_len, s.kv(), s.value_dim}, DType::BFloat16, kGpu);
    const std::string why = cuda::cudnn_sdpa_refusal(q, k, v, {});
    const cuda::AttentionBackend chosen = cuda::select_attention_backend(q, k, v, {});
    std::printf("grouped %s: cuDNN %s, chosen %s\n", describe(s).c_str(), why.empty() ? "serves" : why.c_str(),
                cuda::attention_backend_name(chosen));
    if (why.empty()) {
      check_attention(cuda::AttentionBackend::Cudnn, DType::BFloat16, s, seed += 3);
    } else {
      EXPECT_EQ(chosen, cuda::AttentionBackend::Flash) << describe(s);
    }
  }
}


void expect_error(const std::function<void()>& call, const std::string& fragment) {
  try {
    call();
    ADD_FAILURE() << "expected fastdit::Error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(CudaAttention, BackendChoiceAndRefusals) {
  const Tensor q32 = Tensor::zeros({1, 4, 2, 64}, DType::Float32, kGpu);
  const Tensor q16 = Tensor::zeros({1, 4, 2, 64}, DType::BFloat16, kGpu);
  const Tensor mask = Tensor::zeros({4, 4}, DType::Float32, kGpu);
  const Tensor odd = Tensor::zeros({1, 4, 2, 36}, DType::BFloat16, kGpu);
  Tensor out32 = Tensor::empty({1, 4, 2, 64}, DType::Float32, kGpu);
  Tensor out16 = Tensor::empty({1, 4, 2, 64}, DType::BFloat16, kGpu);
  using cuda::AttentionBackend;
  expect_error(
      [&] { cuda::attention_with(AttentionBackend::Flash, q32, q32, q32, {}, 1.0f, out32); },
      "bfloat16 or float16");
  expect_error(
      [&] { cuda::attention_with(AttentionBackend::Flash, q16, q16, q16, mask, 1.0f, out16); },
      "key masks only");  // a [Sq, Sk] mask varies over queries: the reference kernel's
  expect_error(
      [&] { cuda::attention_with(AttentionBackend::Cudnn, q16, q16, q16, mask, 1.0f, out16); },
      "no mask");
  expect_error(
      [&] { cuda::attention_with(AttentionBackend::Flash, odd, odd, odd, {}, 1.0f, out16); },
      "multiples of 8");

  ::unsetenv("FASTDIT_ATTENTION_BACKEND");
  EXPECT_EQ(cuda::select_attention_backend(q32, q32, q32, {}), AttentionBackend::Reference);
  EXPECT_EQ(cuda::select_attention_backend(q16, q16, q16, mask), AttentionBackend::Reference);
  EXPECT_EQ(cuda::select_attention_backend(odd, odd, odd, {}), AttentionBackend::Reference);
  EXPECT_NE(cuda::select_attention_backend(q16, q16, q16, {}), AttentionBackend::Reference);
  // Long sequences at head dim 128: our Hopper kernel, where it is measured faster than cuDNN.
  const Tensor wan = Tensor::zeros({1, 8192, 2, 128}, DType::BFloat16, kGpu);
  const Tensor flux = Tensor::zeros({1, 4608, 2, 128}, DType::BFloat16, kGpu);
  if (cuda::flash_attention_sm90_serves(wan, wan, wan, 1.0f)) {
    EXPECT_EQ(cuda::select_attention_backend(wan, wan, wan, {}), AttentionBackend::Flash);
    EXPECT_EQ(cuda::select_attention_backend(flux, flux, flux, {}),
              cuda::cudnn_sdpa_refusal(flux, flux, flux, {}).empty() ? AttentionBackend::Cudnn
                                                                      : AttentionBackend::Flash);
  } else {
    EXPECT_NE(cuda::select_attention_backend(wan, wan, wan, {}), AttentionBackend::Reference);
  }
  ::setenv("FASTDIT_ATTENTION_BACKEND", "flash", 1);
  EXPECT_EQ(cuda::select_attention_backend(q16, q16, q16, {}), AttentionBackend::Flash);
  expect_error([&] { cuda::attention(q32, q32, q32, {}, 1.0f, out32); },
               "FASTDIT_ATTENTION_BACKEND=flash");
  ::setenv("FASTDIT_ATTENTION_BACKEND", "reference", 1);
  EXPECT_EQ(cuda::select_attention_backend(q16, q16, q16, {}), AttentionBackend::Reference);
  ::setenv("FASTDIT_ATTENTION_BACKEND", "fastest", 1);
  expect_error([&] { cuda::select_attention_backend(q16, q16, q16, {}); }, "not one of");
  ::unsetenv("FASTDIT_ATTENTION_BACKEND");
}

}  // namespace
}  // namespace fastdit
