#include <gtest/gtest.h>

#include "nn/layers.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

// A feed-forward with seeded random weights.
struct RandomFeedForward {
  nn::FeedForward ffn{16, 64, 16, nn::Activation::GELUTanh};
  RandomFeedForward() {
    uint64_t seed = 100;
    for (auto& [name, param] : ffn.named_parameters()) param->value = testing::random_tensor(param->shape, ++seed);
  }
};

TEST(FeedForward, GatedResidualInPiecesEqualsTheWholeSequence) {
  const RandomFeedForward f;
  const Tensor residual = testing::random_tensor({2, 10, 16}, 1), x = testing::random_tensor({2, 10, 16}, 2);
  for (const Shape& gate_shape : {Shape{2, 1, 16}, Shape{2, 10, 16}, Shape{1, 1, 16}, Shape{16}}) {
    const Tensor gate = testing::random_tensor(gate_shape, 3);
    const Tensor expected = ops::gated_add(residual, f.ffn.forward(x), gate);
    for (int64_t max_tokens : {int64_t{10}, int64_t{3}, int64_t{1}}) {  // one piece, 3+3+3+1 ... per item
      Tensor got = residual.clone();
      f.ffn.add_gated_to(got, x, gate, max_tokens);
      // Pieces change only how many rows each GEMM gets; a BLAS may then block its float32
      // sums differently (seen on an AVX-512 machine: 3e-6 at outputs of ~20), so the bound
      // is float32 rounding, not bit equality. A wrong piece (a missed, doubled or shifted
      // row) is off by the size of the values themselves.
      EXPECT_LE(testing::rel_l2(got, expected), 1e-6)
          << "gate " << shape_str(gate_shape) << ", pieces of " << max_tokens << " tokens";
    }
  }
}

}  // namespace
}  // namespace fastdit
