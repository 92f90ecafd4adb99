// Sequence parallelism changes a token's numbers only where the math is split, never
// through kernel shapes: on one GPU, the ops a sharded Wan forward runs give, for the
// rows (or heads) a rank holds, bit-for-bit what the whole-sequence op gives. GEMMs over
// a half or a quarter of the Wan 480p sequence against all of it (cuBLASLt keeps one
// algorithm per n, k from 2048 rows on); attention over a rank's heads against all heads;
// the fused q/k norm + RoPE over a shard with its rows of the table.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "backends/cuda/cuda_device.h"
#include "ops/ops.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

using testing::random_tensor;

const Device kGpu = Device::cuda(0);

Tensor random_gpu(const Shape& shape, uint64_t seed, DType dtype = DType::BFloat16) {
  return random_tensor(shape, seed).to(dtype).to(kGpu);
}

// Positions where the two differ (bitwise), and the largest difference.
void expect_identical(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const Tensor a = got.contiguous().to(Device::cpu()), b = want.contiguous().to(Device::cpu());
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  const size_t element = a.nbytes() / static_cast<size_t>(a.numel());
  const auto* pa = static_cast<const unsigned char*>(a.data_ptr());
  const auto* pb = static_cast<const unsigned char*>(b.data_ptr());
  int64_t differing = 0;
  for (int64_t i = 0; i < a.numel(); ++i) differing += std::memcmp(pa + i * element, pb + i * element, element) != 0;
  double max_abs = 0;
  if (differing) {
    const auto fa = a.to_float_vector(), fb = b.to_float_vector();
    for (size_t i = 0; i < fa.size(); ++i) max_abs = std::max(max_abs, static_cast<double>(std::abs(fa[i] - fb[i])));
  }
  std::printf("%-58s %lld of %lld elements differ (max |diff| %.3g)\n", what.c_str(),
              static_cast<long long>(differing), static_cast<long long>(a.numel()), max_abs);
  EXPECT_EQ(differing, 0) << what;
}

// Rows [first, first + count) of x on dim 1, as a tensor of their own (fresh storage, as
// a rank's shard is).
Tensor rows(const Tensor& x, int64_t first, int64_t count) { return x.narrow(1, first, count).contiguous(); }

TEST(ShardInvariance, GemmRowsDoNotDependOnTheRowCount) {
  // Wan 1.3B's projections at 480p (32,760 tokens) and 14B's at 720p (75,600), sharded
  // over 2 and 4 ranks; with and without the fused bias and bias+GELU epilogues.
  struct Case {
    int64_t tokens, in, out;
    bool gelu;
  };
  const Case cases[] = {{32760, 1536, 4608, false}, {32760, 1536, 8960, true}, {32760, 8960, 1536, false},
                        {75600, 5120, 5120, false}, {75600, 5120, 13824, true}};
  uint64_t seed = 100;
  for (const Case& c : cases) {
    const Tensor x = random_gpu({1, c.tokens, c.in}, ++seed);
    const Tensor w = random_gpu({c.out, c.in}, ++seed), bias = random_gpu({c.out}, ++seed);
    const auto project = [&](const Tensor& t) {
      return c.gelu ? ops::linear_gelu(t, w, bias, ops::GeluApprox::Tanh) : ops::linear(t, w, bias);
    };
    const Tensor whole = project(x);
    for (int world : {2, 4}) {
      const int64_t shard = c.tokens / world;
      for (int rank : {0, world - 1}) {
        const std::string what = "gemm " + std::to_string(c.tokens) + "x" + std::to_string(c.in) + "->" +
                                 std::to_string(c.out) + (c.gelu ? "+gelu" : "") + " rank " +
                                 std::to_string(rank) + "/" + std::to_string(world);
        expect_identical(project(rows(x, rank * shard, shard)), rows(whole, rank * shard, shard), what);
      }
    }
  }
}

TEST(ShardInvariance, AttentionOverARanksHeadsEqualsAllHeads) {
  // Wan 1.3B's 12 heads of 128 at a quarter of the 480p sequence; ranks of 2 and 4 hold
  // 6 and 3 heads of the whole sequence.
  const int64_t tokens = 8190, heads = 12, dim = 128;
  const Tensor q = random_gpu({1, tokens, heads, dim}, 1), k = random_gpu({1, tokens, heads, dim}, 2),
               v = random_gpu({1, tokens, heads, dim}, 3);
  const Tensor whole = ops::attention(q, k, v);
  for (int world : {2, 4}) {
    const int64_t local = heads / world;
    const auto part = [&](const Tensor& t, int rank) { return t.narrow(2, rank * local, local).contiguous(); };
    for (int rank : {0, world - 1})
      expect_identical(ops::attention(part(q, rank), part(k, rank), part(v, rank)), part(whole, rank),
                       "attention heads of rank " + std::to_string(rank) + "/" + std::to_string(world));
  }
}

TEST(ShardInvariance, QkvNormRopeOverAShardEqualsTheWholeSequence) {
  const int64_t tokens = 32760, dim = 1536, heads = 12;
  const Tensor qkv = random_gpu({1, tokens, 3 * dim}, 11);
  const Tensor norm_q = random_gpu({dim}, 12), norm_k = random_gpu({dim}, 13);
  const Tensor cos = random_gpu({tokens, dim / heads}, 14, DType::Float32),
               sin = random_gpu({tokens, dim / heads}, 15, DType::Float32);
  const auto whole = ops::qkv_norm_rope(qkv, norm_q, norm_k, 1e-6f, heads, cos, sin, ops::RopeStyle::Interleaved);
  for (int world : {2, 4}) {
    const int64_t shard = tokens / world;
    const int rank = world - 1;
    const auto part = ops::qkv_norm_rope(rows(qkv, rank * shard, shard), norm_q, norm_k, 1e-6f, heads,
                                         cos.narrow(0, rank * shard, shard).contiguous(),
                                         sin.narrow(0, rank * shard, shard).contiguous(), ops::RopeStyle::Interleaved);
    const std::string tag = " rank " + std::to_string(rank) + "/" + std::to_string(world);
    expect_identical(part.q, rows(whole.q, rank * shard, shard), "qkv_norm_rope q" + tag);
    expect_identical(part.k, rows(whole.k, rank * shard, shard), "qkv_norm_rope k" + tag);
    expect_identical(part.v, rows(whole.v, rank * shard, shard), "qkv_norm_rope v" + tag);
  }
}

}  // namespace
}  // namespace fastdit
