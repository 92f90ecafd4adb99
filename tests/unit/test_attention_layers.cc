#include <gtest/gtest.h>

#include <cmath>

#include "nn/attention.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

TEST(DistributedAttention, JointTokensAttendTogetherWithoutRope) {
  const Tensor q = testing::random_tensor({2, 7, 3, 8}, 1), k = testing::random_tensor({2, 7, 3, 8}, 2),
               v = testing::random_tensor({2, 7, 3, 8}, 3);
  const Tensor rq = testing::random_tensor({2, 4, 3, 8}, 4), rk = testing::random_tensor({2, 4, 3, 8}, 5),
               rv = testing::random_tensor({2, 4, 3, 8}, 6);
  const Shape grid{7};
  const int64_t dims[] = {8};
  const auto rope = nn::rotary_grid_table(dims, grid, 10000.0, ops::RopeStyle::Interleaved);
  const auto out = nn::DistributedAttention().forward(q, k, v, 7, &rope, ops::RopeStyle::Interleaved, rq, rk, rv);
  // Reference: rope on the main tokens only, then one attention over [main | replicated].
  const Tensor qs[] = {ops::rope(q, rope.cos, rope.sin, ops::RopeStyle::Interleaved), rq};
  const Tensor ks[] = {ops::rope(k, rope.cos, rope.sin, ops::RopeStyle::Interleaved), rk};
  const Tensor vs[] = {v, rv};
  const Tensor all = ops::attention(ops::concat(qs, 1), ops::concat(ks, 1), ops::concat(vs, 1));
  EXPECT_EQ(testing::max_abs_diff(out.out, all.narrow(1, 0, 7).contiguous()), 0.0);
  EXPECT_EQ(testing::max_abs_diff(out.replicated_out, all.narrow(1, 7, 4).contiguous()), 0.0);
}

TEST(LocalAttention, AppliesRopeToQueryAndKey) {
  const Tensor q = testing::random_tensor({1, 5, 2, 6}, 7), k = testing::random_tensor({1, 5, 2, 6}, 8),
               v = testing::random_tensor({1, 5, 2, 6}, 9);
  const Shape grid{5};
  const int64_t dims[] = {6};
  const auto rope = nn::rotary_grid_table(dims, grid, 100.0, ops::RopeStyle::SplitHalf);
  const Tensor out = nn::LocalAttention().forward(q, k, v, &rope, ops::RopeStyle::SplitHalf);
  const Tensor ref = ops::attention(ops::rope(q, rope.cos, rope.sin, ops::RopeStyle::SplitHalf),
                                    ops::rope(k, rope.cos, rope.sin, ops::RopeStyle::SplitHalf), v);
  EXPECT_EQ(testing::max_abs_diff(out, ref), 0.0);
}

// Per-sample key lengths give what a Bool key mask of the first L_b keys gives.
TEST(LocalAttention, VarlenKeysEqualAPrefixMask) {
  const Tensor q = testing::random_tensor({3, 5, 2, 8}, 11), k = testing::random_tensor({3, 6, 2, 8}, 12),
               v = testing::random_tensor({3, 6, 2, 8}, 13);
  const int64_t lengths[] = {6, 2, 0};
  Tensor mask = Tensor::empty({3, 6}, DType::Bool);
  auto* flags = static_cast<uint8_t*>(mask.data_ptr());
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t j = 0; j < 6; ++j) flags[b * 6 + j] = j < lengths[b];
  const nn::LocalAttention attention;
  const Tensor out = attention.forward_varlen(q, k, v, lengths);
  EXPECT_LE(testing::max_abs_diff(out, attention.forward(q, k, v, nullptr, ops::RopeStyle::Interleaved, mask)), 1e-6);
  EXPECT_EQ(testing::max_abs_diff(out.narrow(0, 2, 1).contiguous(), Tensor::zeros({1, 5, 2, 8}, DType::Float32)), 0.0);
  const int64_t all[] = {6, 6, 6};
  EXPECT_EQ(testing::max_abs_diff(attention.forward_varlen(q, k, v, all), ops::attention(q, k, v)), 0.0);
}

// An isolated prefix attends only to itself; the rest attends to every token and the extra
// (cached) keys and values.
TEST(DistributedAttention, IsolatedPrefixAndExtraKeys) {
  const Tensor q = testing::random_tensor({2, 7, 2, 8}, 21), k = testing::random_tensor({2, 7, 2, 8}, 22),
               v = testing::random_tensor({2, 7, 2, 8}, 23);
  const Tensor ek = testing::random_tensor({2, 4, 2, 8}, 24), ev = testing::random_tensor({2, 4, 2, 8}, 25);
  nn::DistributedAttention::Extras extras;
  extras.isolated_prefix = 3;
  const Tensor prefix = nn::DistributedAttention().forward(q, k, v, 7, nullptr, ops::RopeStyle::Interleaved, extras).out;
  const Tensor head = ops::attention(q.narrow(1, 0, 3), k.narrow(1, 0, 3), v.narrow(1, 0, 3));
  const Tensor rest = ops::attention(q.narrow(1, 3, 4), k, v);
  const Tensor parts[] = {head, rest};
  EXPECT_EQ(testing::max_abs_diff(prefix, ops::concat(parts, 1)), 0.0);
  extras = {};
  extras.extra_k = ek;
  extras.extra_v = ev;
  const Tensor cached = nn::DistributedAttention().forward(q, k, v, 7, nullptr, ops::RopeStyle::Interleaved, extras).out;
  const Tensor keys[] = {k, ek}, values[] = {v, ev};
  EXPECT_EQ(testing::max_abs_diff(cached, ops::attention(q, ops::concat(keys, 1), ops::concat(values, 1))), 0.0);
}

TEST(RotaryTable, WanAxisLayout) {
  // Token (t, h, w) = (1, 2, 3) of a [2, 3, 4] grid with axis widths [4, 2, 2].
  const Shape grid{2, 3, 4};
  const int64_t dims[] = {4, 2, 2};
  const auto table = nn::rotary_grid_table(dims, grid, 10000.0, ops::RopeStyle::Interleaved);
  const auto cos = table.cos.to_float_vector();
  const int64_t token = (1 * 3 + 2) * 4 + 3;
  EXPECT_FLOAT_EQ(cos[token * 8 + 0], std::cos(1.0f));               // t, j = 0
  EXPECT_FLOAT_EQ(cos[token * 8 + 1], std::cos(1.0f));               // its pair
  EXPECT_FLOAT_EQ(cos[token * 8 + 2], static_cast<float>(std::cos(1.0 / 100.0)));  // t, j = 1
  EXPECT_FLOAT_EQ(cos[token * 8 + 4], std::cos(2.0f));               // h
  EXPECT_FLOAT_EQ(cos[token * 8 + 6], std::cos(3.0f));               // w
}

TEST(RotaryTable, PositionsGiveTheGridRowsAndFractionalAnglesInFloat64) {
  // The grid's own coordinates as positions, in a shuffled token order, give its rows.
  const Shape grid{2, 3, 5};
  const int64_t dims[] = {4, 6, 2};
  for (const auto style : {ops::RopeStyle::Interleaved, ops::RopeStyle::SplitHalf}) {
    const auto table = nn::rotary_grid_table(dims, grid, 10000.0, style);
    std::vector<float> positions;
    std::vector<int64_t> order;
    for (int64_t i = 0; i < 30; ++i) order.push_back((i * 7) % 30);  // a permutation of the tokens
    for (int64_t token : order)
      for (float coordinate : {float(token / 15), float(token / 5 % 3), float(token % 5)}) positions.push_back(coordinate);
    const auto free = nn::rotary_position_table(dims, Tensor::from_vector(positions, {30, 3}), 10000.0, style);
    for (int64_t i = 0; i < 30; ++i) {
      EXPECT_EQ(testing::max_abs_diff(free.cos.narrow(0, i, 1), table.cos.narrow(0, order[i], 1)), 0.0) << i;
      EXPECT_EQ(testing::max_abs_diff(free.sin.narrow(0, i, 1), table.sin.narrow(0, order[i], 1)), 0.0) << i;
    }
  }
  // A fractional position: angle 2.5 * 10000^(-2/4) in float64, rounded once.
  const int64_t one_axis[] = {4};
  const auto half = nn::rotary_position_table(one_axis, Tensor::from_vector<float>({2.5f}, {1, 1}), 10000.0,
                                              ops::RopeStyle::Interleaved);
  EXPECT_EQ(half.sin.to_float_vector()[2], static_cast<float>(std::sin(2.5 / 100.0)));
  EXPECT_EQ(half.cos.to_float_vector()[3], static_cast<float>(std::cos(2.5 / 100.0)));
  EXPECT_THROW(nn::rotary_position_table(one_axis, Tensor::from_vector<float>({1, 2}, {1, 2}), 10000.0,
                                         ops::RopeStyle::Interleaved),
               Error);
  EXPECT_THROW(nn::rotary_position_table(one_axis, Tensor::from_vector<float>({NAN}, {1, 1}), 10000.0,
                                         ops::RopeStyle::Interleaved),
               Error);
}

}  // namespace
}  // namespace fastdit
