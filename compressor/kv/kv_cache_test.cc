// KvCache ownership: move-only, and Clone is a deep copy that shares no storage with its source.
#include "compressor/kv/kv_cache.h"

#include <type_traits>
#include <vector>

#include "gtest/gtest.h"

namespace kvc {
namespace {

static_assert(!std::is_copy_constructible_v<KvCache>, "a copy would share tensors; use Clone()");
static_assert(!std::is_copy_assignable_v<KvCache>, "a copy would share tensors; use Clone()");
static_assert(std::is_nothrow_move_constructible_v<KvCache>, "caches move through StatusOr and vectors");

KvCache Filled(int64_t len) {
  KvCache c(KvCacheShape{.num_layers = 2, .kv_heads = 3, .head_dim = 4});
  for (int64_t l = 0; l < 2; ++l) {
    torch::Tensor k = torch::arange(3 * len * 4, torch::kFloat32).reshape({3, len, 4}) + l;
    c.Append(l, k, -k, torch::arange(len, torch::kInt64));
  }
  c.set_next_position(len + 5);
  c.set_key_rotation(KeyRotation::kCompacted);
  c.set_model_fingerprint("abc");
  return c;
}

TEST(KvCacheTest, CloneCopiesEverythingIntoItsOwnStorage) {
  KvCache a = Filled(5);
  KvCache b = a.Clone();
  EXPECT_EQ(b.next_position(), 10);
  EXPECT_EQ(b.key_rotation(), KeyRotation::kCompacted);
  EXPECT_EQ(b.model_fingerprint(), "abc");
  EXPECT_EQ(b.peak_length(), a.peak_length());
  for (int64_t l = 0; l < 2; ++l) {
    EXPECT_TRUE(torch::equal(b.Keys(l), a.Keys(l)));
    EXPECT_TRUE(torch::equal(b.Values(l), a.Values(l)));
    EXPECT_TRUE(torch::equal(b.Positions(l), a.Positions(l)));
  }
  // Writing into the clone, in place or by appending into spare capacity, leaves the source as it was.
  const torch::Tensor keys_before = a.Keys(0).clone();
  {
    c10::InferenceMode guard;  // the storage is made of inference tensors
    b.Keys(0).fill_(99);
  }
  b.Append(0, torch::ones({3, 2, 4}), torch::ones({3, 2, 4}), torch::arange(2, torch::kInt64));
  b.Truncate(1);
  EXPECT_TRUE(torch::equal(a.Keys(0), keys_before));
  EXPECT_EQ(a.length(0), 5);
}

TEST(KvCacheTest, CloneOfAnEmptyCacheIsEmpty) {
  KvCache a(KvCacheShape{.num_layers = 3, .kv_heads = 1, .head_dim = 8});
  KvCache b = a.Clone();
  EXPECT_EQ(b.num_layers(), 3);
  EXPECT_EQ(b.length(), 0);
  EXPECT_EQ(b.Keys(2).size(1), 0);
}

TEST(KvCacheTest, MoveTransfersTheStorage) {
  KvCache a = Filled(4);
  const void* data = a.Keys(1).data_ptr();
  KvCache b = std::move(a);
  EXPECT_EQ(b.Keys(1).data_ptr(), data);
  EXPECT_EQ(b.length(), 4);
}

TEST(KvCacheTest, PaddingIsTrackedPerHeadAndDroppedWithTheLastPaddedSlot) {
  KvCache c(KvCacheShape{.num_layers = 2, .kv_heads = 2, .head_dim = 4});
  torch::Tensor valid = torch::tensor({1, 1, 1, 1, 0, 0}, torch::kBool).view({2, 3});  // head 1 keeps 1 of 3
  c.Reset(0, torch::ones({2, 3, 4}), torch::ones({2, 3, 4}), torch::arange(3, torch::kInt64), valid);
  c.Append(1, torch::ones({2, 5, 4}), torch::ones({2, 5, 4}), torch::arange(5, torch::kInt64));
  EXPECT_TRUE(c.ragged());
  EXPECT_EQ(c.length(), 5) << "the longest layer";
  EXPECT_EQ(c.HeadLengths(0), (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(c.HeadLengths(1), (std::vector<int64_t>{5, 5}));
  EXPECT_FALSE(c.Valid(1).defined()) << "a dense layer carries no mask";
  EXPECT_EQ(c.Entries(), 3 + 1 + 10);
  EXPECT_TRUE(torch::equal(c.Positions(0)[1], torch::tensor({0, -1, -1}, torch::kInt64)));
  // New entries are real in every head; the mask grows with them.
  c.Append(0, torch::ones({2, 2, 4}), torch::ones({2, 2, 4}), torch::arange(3, 5, torch::kInt64));
  EXPECT_EQ(c.HeadLengths(0), (std::vector<int64_t>{5, 3}));
  KvCache copy = c.Clone();
  EXPECT_TRUE(torch::equal(copy.Valid(0), c.Valid(0)));
  // Dropping the padded slots leaves a dense layer.
  c.TruncateLayer(0, 1);
  EXPECT_FALSE(c.Valid(0).defined());
  EXPECT_EQ(c.length(0), 1);
  EXPECT_EQ(copy.HeadLengths(0), (std::vector<int64_t>{5, 3})) << "the clone keeps its own mask";
}

}  // namespace
}  // namespace kvc
