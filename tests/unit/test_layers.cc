#include <gtest/gtest.h>

#include <cmath>
#include <string_view>

#include "nn/layers.h"
#include "ops/ops.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

// Seeded random whole numbers in [-4, 4] as float32: every product and sum of the small
// feed-forward below is a whole number far below 2^24, so float32 computes it exactly in
// any order and the pieces must equal the whole sequence bit for bit, whatever BLAS
// blocking each row count gets.
Tensor whole_numbers(const Shape& shape, uint64_t seed) {
  Tensor t = testing::random_tensor(shape, seed, -4.49f, 4.49f);
  float* data = static_cast<float*>(t.data_ptr());
  for (int64_t i = 0; i < t.numel(); ++i) data[i] = std::nearbyint(data[i]);
  return t;
}

// A feed-forward with seeded whole-number weights and no activation (exact arithmetic).
struct WholeNumberFeedForward {
  nn::FeedForward ffn{16, 64, 16, nn::Activation::Identity};
  WholeNumberFeedForward() {
    uint64_t seed = 100;
    for (auto& [name, param] : ffn.named_parameters()) param->value = whole_numbers(param->shape, ++seed);
  }
};

TEST(FeedForward, GatedResidualInPiecesEqualsTheWholeSequence) {
  const WholeNumberFeedForward f;
  const Tensor residual = whole_numbers({2, 10, 16}, 1), x = whole_numbers({2, 10, 16}, 2);
  for (const Shape& gate_shape : {Shape{2, 1, 16}, Shape{2, 10, 16}, Shape{1, 1, 16}, Shape{16}}) {
    const Tensor gate = whole_numbers(gate_shape, 3);
    const Tensor expected = ops::gated_add(residual, f.ffn.forward(x), gate);
    for (int64_t max_tokens : {int64_t{10}, int64_t{3}, int64_t{1}}) {  // one piece, 3+3+3+1 ... per item
      Tensor got = residual.clone();
      f.ffn.add_gated_to(got, x, gate, max_tokens * 64);  // 64: the inner width
      EXPECT_EQ(testing::max_abs_diff(got, expected), 0.0)
          << "gate " << shape_str(gate_shape) << ", pieces of " << max_tokens << " tokens";
    }
  }
}

// The budget is per batch item: a batch of two items of 10 tokens with room for 3 tokens'
// inner activation runs 4 pieces per item (3+3+3+1), two GEMMs each, whatever the batch.
TEST(FeedForward, PiecesAreSizedPerBatchItem) {
  struct CountLinears : ops::KernelObserver {
    int linears = 0;
    void before_kernel(const char* op, Device) override { linears += std::string_view(op) == "linear"; }
    void after_kernel(const char*, Device) override {}
  } counter;
  const WholeNumberFeedForward f;
  for (int64_t batch : {int64_t{1}, int64_t{2}}) {
    Tensor residual = whole_numbers({batch, 10, 16}, 1);
    const Tensor x = whole_numbers({batch, 10, 16}, 2), gate = whole_numbers({16}, 3);
    counter.linears = 0;
    ops::set_kernel_observer(&counter);
    f.ffn.add_gated_to(residual, x, gate, 3 * 64);
    ops::set_kernel_observer(nullptr);
    EXPECT_EQ(counter.linears, batch * 4 * 2) << "batch " << batch;
  }
  // Room for a whole item: one pass over the batch.
  Tensor residual = whole_numbers({2, 10, 16}, 1);
  counter.linears = 0;
  ops::set_kernel_observer(&counter);
  f.ffn.add_gated_to(residual, whole_numbers({2, 10, 16}, 2), whole_numbers({16}, 3), 10 * 64);
  ops::set_kernel_observer(nullptr);
  EXPECT_EQ(counter.linears, 2);
}

}  // namespace
}  // namespace fastdit
