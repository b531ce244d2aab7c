#include "compressor/model/decode_attention.h"

#include <cmath>

#include "gtest/gtest.h"

namespace kvc {
namespace {

// The composed form the decode step used before: grouped batched products over every slot, padding
// masked to -inf before a float32 softmax.
torch::Tensor ComposedAttention(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                                const torch::Tensor& valid, double scale) {
  const int64_t H = q.size(0), Hkv = K.size(0), D = q.size(1);
  torch::Tensor scores = torch::bmm(q.reshape({Hkv, H / Hkv, D}), K.transpose(1, 2)) * scale;
  if (valid.defined()) scores.masked_fill_(valid.logical_not().unsqueeze(1), -INFINITY);
  return torch::bmm(torch::softmax(scores, -1), V).reshape({H, D});
}

// A ragged layer as a cache holds it: each head's kept entries, padding up to the fullest head, then
// entries appended after (decoded tokens), all in a view of larger storage.
struct RaggedLayer {
  torch::Tensor K, V, valid;
};
RaggedLayer MakeRaggedLayer(int64_t Hkv, int64_t L, int64_t D, torch::ScalarType dtype) {
  torch::Tensor K = torch::randn({Hkv, L + 37, D}).to(dtype).narrow(1, 0, L);
  torch::Tensor V = torch::randn({Hkv, L + 37, D}).to(dtype).narrow(1, 0, L);
  const int64_t appended = std::min<int64_t>(L, 5), kept = L - appended;
  torch::Tensor valid = torch::ones({Hkv, L + 37}, torch::kBool).narrow(1, 0, L);
  for (int64_t h = 0; h < Hkv; ++h) {
    const int64_t real = h == 0 ? kept : kept * (h + 1) / (2 * Hkv + 1);  // head 0 is the fullest
    valid[h].narrow(0, real, kept - real).fill_(false);
    // Whatever padding holds must not reach the result.
    K[h].narrow(0, real, kept - real).fill_(NAN);
    V[h].narrow(0, real, kept - real).fill_(NAN);
  }
  return {K, V, valid};
}

TEST(DecodeAttentionTest, MatchesTheComposedFormOverRealSlots) {
  torch::manual_seed(7);
  for (int64_t D : {64, 24}) {
    for (int64_t G : {1, 3}) {
      for (int64_t L : {1, 6, 700, 1500}) {
        const int64_t Hkv = 3, H = G * Hkv;
        const double scale = 1.0 / std::sqrt(static_cast<double>(D));
        torch::Tensor q = torch::randn({H, D});
        RaggedLayer r = MakeRaggedLayer(Hkv, L, D, torch::kFloat32);
        ASSERT_TRUE(CpuDecodeAttentionEligible(q, r.K, r.V, r.valid));
        torch::Tensor got = CpuDecodeAttention(q, r.K, r.V, r.valid, scale);
        torch::Tensor real_k = torch::where(r.valid.unsqueeze(2), r.K, 0), real_v = torch::where(r.valid.unsqueeze(2), r.V, 0);
        torch::Tensor want = ComposedAttention(q, real_k, real_v, r.valid, scale);
        EXPECT_EQ(got.sizes(), want.sizes());
        EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5)) << "D=" << D << " G=" << G << " L=" << L;
        // Without a mask every slot is real.
        torch::Tensor dense_k = torch::randn({Hkv, L, D}), dense_v = torch::randn({Hkv, L, D});
        EXPECT_TRUE(torch::allclose(CpuDecodeAttention(q, dense_k, dense_v, {}, scale),
                                    ComposedAttention(q, dense_k, dense_v, {}, scale), 1e-5, 1e-5))
            << "dense D=" << D << " G=" << G << " L=" << L;
      }
    }
  }
}

TEST(DecodeAttentionTest, ReadsBfloat16CachesExactly) {
  torch::manual_seed(8);
  const int64_t Hkv = 3, H = 9, D = 64, L = 900;
  RaggedLayer r = MakeRaggedLayer(Hkv, L, D, torch::kBFloat16);
  torch::Tensor q = torch::randn({H, D}, torch::kBFloat16);
  ASSERT_TRUE(CpuDecodeAttentionEligible(q, r.K, r.V, r.valid));
  torch::Tensor got = CpuDecodeAttention(q, r.K, r.V, r.valid, 0.125);
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  // The float32 computation over the same bfloat16 values, rounded once at the end.
  torch::Tensor f32 = [&] {
    torch::Tensor k = torch::where(r.valid.unsqueeze(2), r.K.to(torch::kFloat32), 0);
    torch::Tensor v = torch::where(r.valid.unsqueeze(2), r.V.to(torch::kFloat32), 0);
    return ComposedAttention(q.to(torch::kFloat32), k, v, r.valid, 0.125);
  }();
  EXPECT_TRUE(torch::allclose(got.to(torch::kFloat32), f32, 1e-2, 1e-2));
  EXPECT_TRUE(torch::allclose(CpuDecodeAttention(q, r.K, r.V, r.valid, 0.125).to(torch::kFloat32),
                              got.to(torch::kFloat32)));
}

TEST(DecodeAttentionTest, Eligibility) {
  torch::Tensor q = torch::randn({6, 16}), K = torch::randn({2, 5, 16}), valid = torch::ones({2, 5}, torch::kBool);
  EXPECT_TRUE(CpuDecodeAttentionEligible(q, K, K, valid));
  EXPECT_TRUE(CpuDecodeAttentionEligible(q, K, K, {}));
  EXPECT_FALSE(CpuDecodeAttentionEligible(q, K, K.to(torch::kBFloat16), valid));  // mixed cache dtypes
  EXPECT_FALSE(CpuDecodeAttentionEligible(q, K.transpose(1, 2), K.transpose(1, 2), valid));
  EXPECT_FALSE(CpuDecodeAttentionEligible(torch::randn({5, 16}), K, K, valid));  // 5 heads over 2
  EXPECT_FALSE(CpuDecodeAttentionEligible(q, K, K, valid.to(torch::kInt8)));
  EXPECT_FALSE(CpuDecodeAttentionEligible(q.to(torch::kFloat16), K, K, valid));
  EXPECT_FALSE(CpuDecodeAttentionEligible(q, K.narrow(1, 0, 0), K.narrow(1, 0, 0), valid.narrow(1, 0, 0)));
}

}  // namespace
}  // namespace kvc
