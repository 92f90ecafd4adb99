// Sequence parallelism on the CPU: N ranks as N threads (distributed::ThreadGroup) run
// the same layout code the NCCL transport runs, so these tests cover everything but the
// transport: sharding with padding, the Ulysses head exchange, the gathered-keys
// fallback for head counts the world does not divide, and failures ending every rank.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "distributed/thread_group.h"
#include "nn/attention.h"
#include "support/test_support.h"

namespace fastdit {
namespace {

using distributed::Communicator;
using distributed::PeerFailure;
using distributed::ThreadGroup;
using namespace std::chrono_literals;

// Runs body(rank's layout) on `world` threads; rethrows the first failure.
void on_ranks(int world, const std::function<void(const nn::SequenceParallel&)>& body) {
  ThreadGroup group(world, 20s);
  const auto failures = group.run([&](Communicator& comm) { body(nn::SequenceParallel(comm)); });
  for (const auto& failure : failures)
    if (failure) std::rethrow_exception(failure);
}

// The rows of this rank's shard of x (sequence on dim 1), zero past the end.
Tensor expected_shard(const Tensor& x, int rank, int world) {
  const int64_t length = x.size(1), shard = (length + world - 1) / world;
  const int64_t start = std::min<int64_t>(rank * shard, length);
  return nn::pad_sequence(x.narrow(1, start, std::min(shard, length - start)).contiguous(), 1, shard);
}

class Layout : public ::testing::TestWithParam<std::tuple<int, int64_t>> {};

TEST_P(Layout, ShardThenGatherGivesTheSequenceBack) {
  const auto [world, length] = GetParam();
  const Tensor x = testing::random_tensor({2, length, 5}, 1);
  on_ranks(world, [&](const nn::SequenceParallel& sp) {
    const Tensor shard = sp.shard_sequence(x, 1);
    EXPECT_EQ(shard.shape(), (Shape{2, sp.shard_length(length), 5}));
    EXPECT_EQ(testing::max_abs_diff(shard, expected_shard(x, sp.rank(), world)), 0.0);
    const Tensor gathered = sp.gather_sequence(shard, 1, length);
    EXPECT_EQ(gathered.shape(), x.shape());
    EXPECT_EQ(testing::max_abs_diff(gathered, x), 0.0);
    // The last dim as the sequence: the rank axis moves next to any dim.
    const Tensor transposed = x.transpose(1, 2).contiguous();
    const Tensor back = sp.gather_sequence(sp.shard_sequence(transposed, 2), 2, length);
    EXPECT_EQ(testing::max_abs_diff(back, transposed), 0.0);
  });
}

TEST_P(Layout, HeadExchangeMovesWholeSequencesOfThisRanksHeads) {
  const auto [world, length] = GetParam();
  const int64_t heads = 12, per_rank = heads / world;
  const Tensor q = testing::random_tensor({2, length, heads, 3}, 2);
  const Tensor k = testing::random_tensor({2, length, heads, 3}, 3);
  on_ranks(world, [&](const nn::SequenceParallel& sp) {
    const Tensor shards[] = {sp.shard_sequence(q, 1), sp.shard_sequence(k, 1)};
    const auto full = sp.sequence_to_heads(shards, length);
    ASSERT_EQ(full.size(), 2u);
    const int64_t first = sp.rank() * per_rank;
    EXPECT_EQ(testing::max_abs_diff(full[0], q.narrow(2, first, per_rank).contiguous()), 0.0);
    EXPECT_EQ(testing::max_abs_diff(full[1], k.narrow(2, first, per_rank).contiguous()), 0.0);
    EXPECT_EQ(full[0].shape(), (Shape{2, length, per_rank, 3}));
    const Tensor back = sp.heads_to_sequence(full[0]);
    EXPECT_EQ(testing::max_abs_diff(back, shards[0]), 0.0);  // padding rows come back zero
    EXPECT_EQ(testing::max_abs_diff(sp.gather_heads(full[1]), k), 0.0);
  });
}

// 45 tokens (the Wan fixtures) pad for 2 and 4 ranks; 2 tokens leave ranks all padding.
INSTANTIATE_TEST_SUITE_P(WorldsAndLengths, Layout,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4), ::testing::Values<int64_t>(45, 12, 2)));

TEST(SequenceParallel, HeadsTheWorldDoesNotDivideAreAClearError) {
  const Tensor q = testing::random_tensor({1, 8, 6, 2}, 4);
  ThreadGroup group(4, 20s);
  const auto failures = group.run([&](Communicator& comm) {
    const nn::SequenceParallel sp(comm);
    const Tensor shard[] = {sp.shard_sequence(q, 1)};
    sp.sequence_to_heads(shard, 8);
  });
  for (const auto& failure : failures) {
    ASSERT_TRUE(failure);
    try {
      std::rethrow_exception(failure);
    } catch (const PeerFailure&) {
      // A rank may see another's failure first; the one that failed names the sizes.
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("6 heads cannot be split over 4 ranks"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("world sizes that work: 1, 2, 3, 6"), std::string::npos) << e.what();
    }
  }
}

// ---- DistributedAttention under SP equals one process ----------------------------------

struct AttentionCase {
  int world;
  int64_t heads;
  bool joint;
};

class AttentionParity : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(AttentionParity, EqualsTheSingleProcessResult) {
  const auto [world, heads, joint] = GetParam();
  const Shape grid{5, 9};  // 45 tokens
  const int64_t axis_dims[] = {4, 4};
  const auto rope = nn::rotary_grid_table(axis_dims, grid, 10000.0, ops::RopeStyle::Interleaved);
  const Tensor q = testing::random_tensor({2, 45, heads, 8}, 10), k = testing::random_tensor({2, 45, heads, 8}, 11),
               v = testing::random_tensor({2, 45, heads, 8}, 12);
  Tensor rq, rk, rv;
  if (joint) {
    rq = testing::random_tensor({2, 6, heads, 8}, 13);
    rk = testing::random_tensor({2, 6, heads, 8}, 14);
    rv = testing::random_tensor({2, 6, heads, 8}, 15);
  }
  const auto style = ops::RopeStyle::Interleaved;
  const auto reference = nn::DistributedAttention().forward(q, k, v, 45, &rope, style, rq, rk, rv);
  on_ranks(world, [&](const nn::SequenceParallel& sp) {
    const nn::DistributedAttention attention(&sp);
    const auto out = attention.forward(sp.shard_sequence(q, 1), sp.shard_sequence(k, 1), sp.shard_sequence(v, 1), 45,
                                       &rope, style, rq, rk, rv);
    EXPECT_LE(testing::max_abs_diff(out.out, expected_shard(reference.out, sp.rank(), world)), 1e-6);
    if (joint) {
      EXPECT_LE(testing::max_abs_diff(out.replicated_out, reference.replicated_out), 1e-6);
    }
  });
}

std::vector<AttentionCase> attention_cases() {
  std::vector<AttentionCase> cases;
  for (int world : {2, 3, 4})
    for (int64_t heads : {12, 2, 5})  // 12 splits (Ulysses); 2 and 5 mostly do not (gathered keys)
      for (bool joint : {false, true}) cases.push_back({world, heads, joint});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionParity, ::testing::ValuesIn(attention_cases()), [](const auto& info) {
  return "P" + std::to_string(info.param.world) + "_H" + std::to_string(info.param.heads) +
         (info.param.joint ? "_joint" : "");
});

// ---- failures end every rank -----------------------------------------------------------

std::string message(const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    return e.what();
  }
}

TEST(ThreadGroup, ARankThatThrowsEndsTheOthersInsteadOfHanging) {
  ThreadGroup group(3, 60s);
  const auto start = std::chrono::steady_clock::now();
  const auto failures = group.run([&](Communicator& comm) {
    if (comm.rank() == 1) FASTDIT_FAIL("out of memory on purpose");
    const Tensor send = Tensor::zeros({4}, DType::Float32);
    Tensor recv = Tensor::empty({3, 4}, DType::Float32);
    comm.all_gather(std::span<const Tensor>(&send, 1), std::span<Tensor>(&recv, 1));
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(message(failures[1]), "out of memory on purpose");
  for (int r : {0, 2}) {
    ASSERT_TRUE(failures[r]);
    EXPECT_THROW(std::rethrow_exception(failures[r]), PeerFailure);
    EXPECT_EQ(message(failures[r]), "rank 1 failed: out of memory on purpose");
  }
}

TEST(ThreadGroup, ARankThatNeverArrivesTimesOutNamingIt) {
  ThreadGroup group(3, 300ms);
  const auto failures = group.run([&](Communicator& comm) {
    if (comm.rank() == 2) return;  // gone without a word
    const Tensor send = Tensor::zeros({3, 2}, DType::Float32);
    Tensor recv = Tensor::empty({3, 2}, DType::Float32);
    comm.all_to_all(std::span<const Tensor>(&send, 1), std::span<Tensor>(&recv, 1));
  });
  EXPECT_FALSE(failures[2]);
  for (int r : {0, 1}) {
    ASSERT_TRUE(failures[r]);
    EXPECT_NE(message(failures[r]).find("timed out after 0.3 s waiting for rank(s) 2"), std::string::npos)
        << message(failures[r]);
  }
}

TEST(ThreadGroup, RanksThatDisagreeOnSizesFail) {
  ThreadGroup group(2, 20s);
  const auto failures = group.run([&](Communicator& comm) {
    const Tensor send = Tensor::zeros({comm.rank() + 1}, DType::Float32);
    Tensor recv = Tensor::empty({2, comm.rank() + 1}, DType::Float32);
    comm.all_gather(std::span<const Tensor>(&send, 1), std::span<Tensor>(&recv, 1));
  });
  for (const auto& failure : failures) {
    ASSERT_TRUE(failure);
    EXPECT_NE(message(failure).find("different programs or shapes"), std::string::npos) << message(failure);
  }
}

TEST(ThreadGroup, CollectivesCheckTheirShapes) {
  ThreadGroup group(2, 20s);
  const Tensor send = Tensor::zeros({3, 2}, DType::Float32);  // leading dim is not the world size
  Tensor recv = Tensor::empty({3, 2}, DType::Float32);
  EXPECT_THROW(group.rank(0).all_to_all(std::span<const Tensor>(&send, 1), std::span<Tensor>(&recv, 1)), Error);
}

}  // namespace
}  // namespace fastdit
