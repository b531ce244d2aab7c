// Re-rotating keys from positions p to p' equals computing them at p' directly, for every RoPE scaling type.
#include "compressor/kv/rerotate.h"

#include "gtest/gtest.h"

namespace kvc {
namespace {

ModelConfig Config(RopeScalingType type) {
  ModelConfig c;
  c.architecture = "llama";
  c.num_layers = 1;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.vocab_size = 100;
  c.max_position_embeddings = 32768;
  c.rope_theta = 500000;
  c.rope_scaling.type = type;
  c.rope_scaling.factor = 8;
  c.rope_scaling.original_max_position_embeddings = 8192;
  return c;
}

class RerotateTest : public ::testing::TestWithParam<RopeScalingType> {};

TEST_P(RerotateTest, EqualsDirectRotation) {
  auto rope = Rope::Create(Config(GetParam()));
  ASSERT_TRUE(rope.ok()) << rope.status();
  torch::manual_seed(0);
  const int64_t H = 2, n = 300, D = 64;
  torch::Tensor raw = torch::randn({H, n, D});
  // Original positions spread over a long document; targets are the compacted 0..n-1.
  torch::Tensor from = std::get<0>(torch::randperm(30000, torch::kInt64).narrow(0, 0, n).sort());
  torch::Tensor to = torch::arange(n, torch::kInt64);
  auto [cf, sf] = rope->CosSin(from, torch::kFloat32);
  auto [ct, st] = rope->CosSin(to, torch::kFloat32);
  torch::Tensor at_from = Rope::Apply(raw, cf, sf);
  torch::Tensor direct = Rope::Apply(raw, ct, st);
  torch::Tensor moved = RerotateKeys(at_from, from, to, *rope);
  double scale = direct.abs().max().item<double>();
  double diff = (moved - direct).abs().max().item<double>();
  // fp32: angles up to ~3e4 rad lose ~2e-3 rad of phase in float32 either way; the bound reflects that.
  EXPECT_LE(diff / scale, 5e-3) << "max diff " << diff;
  // Per-head positions ([H, n]) work the same way.
  torch::Tensor moved2 = RerotateKeys(at_from, from.unsqueeze(0).expand({H, n}), to.unsqueeze(0).expand({H, n}), *rope);
  EXPECT_TRUE(torch::allclose(moved, moved2));
  // Short moves are exact to float rounding.
  torch::Tensor near_from = torch::arange(1000, 1000 + n, torch::kInt64);
  auto [cn, sn] = rope->CosSin(near_from, torch::kFloat32);
  torch::Tensor back = RerotateKeys(Rope::Apply(raw, cn, sn), near_from, to, *rope);
  EXPECT_LE((back - direct).abs().max().item<double>() / scale, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(AllScalings, RerotateTest,
                         ::testing::Values(RopeScalingType::kNone, RopeScalingType::kLinear,
                                           RopeScalingType::kLlama3, RopeScalingType::kYarn));

}  // namespace
}  // namespace kvc
