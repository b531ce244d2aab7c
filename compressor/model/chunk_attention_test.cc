#include "compressor/model/chunk_attention.h"

#include <ATen/ops/scaled_dot_product_attention.h>

#include <tuple>

#include "gtest/gtest.h"

namespace kvc {
namespace {

// One SDPA call with the explicit mask: every cached entry, then causal inside the chunk.
torch::Tensor MaskedAttention(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V, int64_t past) {
  const int64_t n = q.size(1);
  torch::Tensor kidx = torch::arange(past + n).unsqueeze(0), qidx = (torch::arange(n) + past).unsqueeze(1);
  return at::scaled_dot_product_attention(q.unsqueeze(0), K.unsqueeze(0), V.unsqueeze(0), kidx <= qidx, 0.0, false,
                                          std::nullopt, /*enable_gqa=*/q.size(0) != K.size(0));
}

TEST(ChunkAttentionTest, MatchesOneMaskedPass) {
  torch::manual_seed(11);
  for (auto [past, n, Hkv, G, D] : {std::make_tuple(1, 2, 3, 3, 64), std::make_tuple(5, 37, 3, 3, 64),
                                     std::make_tuple(300, 129, 2, 4, 32), std::make_tuple(600, 64, 4, 1, 16)}) {
    torch::Tensor q = torch::randn({Hkv * G, n, D});
    // K and V as a cache holds them: views of larger storage.
    torch::Tensor K = torch::randn({Hkv, past + n + 10, D}).narrow(1, 0, past + n);
    torch::Tensor V = torch::randn({Hkv, past + n + 10, D}).narrow(1, 0, past + n);
    ASSERT_TRUE(CpuChunkAttentionEligible(q, K, V, past));
    torch::Tensor got = CpuChunkAttention(q, K, V, past);
    torch::Tensor want = MaskedAttention(q, K, V, past);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5))
        << "past=" << past << " n=" << n << " max diff " << (got - want).abs().max().item<float>();
  }
}

TEST(ChunkAttentionTest, Bfloat16StaysWithinItsRounding) {
  torch::manual_seed(12);
  const int64_t past = 200, n = 50, Hkv = 3, G = 3, D = 64;
  torch::Tensor q = torch::randn({Hkv * G, n, D}, torch::kBFloat16);
  torch::Tensor K = torch::randn({Hkv, past + n, D}, torch::kBFloat16);
  torch::Tensor V = torch::randn({Hkv, past + n, D}, torch::kBFloat16);
  torch::Tensor got = CpuChunkAttention(q, K, V, past);
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  torch::Tensor want = MaskedAttention(q.to(torch::kFloat32), K.to(torch::kFloat32), V.to(torch::kFloat32), past);
  EXPECT_TRUE(torch::allclose(got.to(torch::kFloat32), want, 2e-2, 2e-2));
}

TEST(ChunkAttentionTest, Eligibility) {
  torch::Tensor q = torch::randn({6, 4, 16}), K = torch::randn({2, 7, 16});
  EXPECT_TRUE(CpuChunkAttentionEligible(q, K, K, 3));
  EXPECT_FALSE(CpuChunkAttentionEligible(q, K, K, 0));                          // no cache: SDPA's causal path
  EXPECT_FALSE(CpuChunkAttentionEligible(q.narrow(1, 0, 1), K.narrow(1, 0, 4), K.narrow(1, 0, 4), 3));  // decode
  EXPECT_FALSE(CpuChunkAttentionEligible(q, K, K, 2));                          // past + n != keys
  EXPECT_FALSE(CpuChunkAttentionEligible(torch::randn({5, 4, 16}), K, K, 3));   // 5 heads over 2
  EXPECT_FALSE(CpuChunkAttentionEligible(q.to(torch::kFloat16), K.to(torch::kFloat16), K.to(torch::kFloat16), 3));
  EXPECT_FALSE(CpuChunkAttentionEligible(q, K.to(torch::kBFloat16), K.to(torch::kBFloat16), 3));
  EXPECT_FALSE(CpuChunkAttentionEligible(q.transpose(0, 1).contiguous().transpose(0, 1), K, K, 3));
}

}  // namespace
}  // namespace kvc
