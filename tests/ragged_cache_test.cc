// Decoding from ragged caches (heads and layers that keep different entries) against transformers with the
// same entries masked out of attention (tests/tools/make_ragged_reference.py). The same binary runs on the
// tiny Llama and, with label `model`, on SmolLM2: KVC_RAGGED_MODEL and KVC_RAGGED_REFERENCE say which.
//
// Logits are compared relative to the reference's scale (max |ours - ref| / max |ref| per row), and a dense
// cache holding every entry must miss the reference by far more, so the check sees the masking.
#include <string>
#include <vector>

#include "compressor/format/kv_cache_adapter.h"
#include "compressor/kv/compose.h"
#include "compressor/model/greedy.h"
#include "compressor/model/llama_model.h"
#include "compressor/model/safetensors_weights.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

constexpr double kTolerance = 1e-3;

std::vector<int64_t> ToVector(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kInt64).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

double RelativeError(const torch::Tensor& got, const torch::Tensor& want) {
  torch::Tensor diff = (got - want).abs().amax(1);
  torch::Tensor scale = want.abs().amax(1);
  return (diff / scale).max().item<double>();
}

class RaggedCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = LlamaModel::Load(kvc::testing::EnvOr("KVC_RAGGED_MODEL", kvc::testing::TestData("tiny_llama")));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->release();
    auto r = SafetensorsWeights::Open(
        kvc::testing::EnvOr("KVC_RAGGED_REFERENCE", kvc::testing::TestData("ragged_tiny.safetensors")));
    ASSERT_TRUE(r.ok()) << r.status();
    ref_ = r->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete ref_;
  }
  static torch::Tensor Ref(const std::string& name) { return ref_->Load(name).value().clone(); }
  static torch::Tensor Keep(int64_t layer) { return Ref("keep_" + std::to_string(layer)).to(torch::kBool); }

  // Every context entry, as a plain prefill leaves them.
  static KvCache Dense() {
    KvCache cache = model_->NewCache();
    auto logits = model_->Prefill(ToVector(Ref("context_ids")), cache);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return cache;
  }

  // The kept entries of each head first, padding after them up to the layer's fullest head.
  static KvCache Compacted() {
    KvCache dense = Dense();
    KvCache cache = model_->NewCache();
    c10::InferenceMode guard;
    for (int64_t l = 0; l < dense.num_layers(); ++l) {
      torch::Tensor keep = Keep(l);  // [Hkv, n]
      torch::Tensor counts = keep.sum(1);
      const int64_t slots = counts.max().item<int64_t>();
      torch::Tensor n = torch::arange(keep.size(1));
      // Kept indices ascending, then the dropped ones: the first counts[h] of each row are head h's.
      torch::Tensor order = std::get<1>(torch::where(keep, n, n + keep.size(1)).sort(1)).narrow(1, 0, slots);
      torch::Tensor valid = torch::arange(slots).unsqueeze(0) < counts.unsqueeze(1);
      torch::Tensor idx3 = order.unsqueeze(-1).expand({order.size(0), slots, dense.shape().head_dim});
      cache.Reset(l, dense.Keys(l).gather(1, idx3), dense.Values(l).gather(1, idx3),
                  dense.Positions(l).gather(1, order), valid);
    }
    cache.set_next_position(dense.next_position());
    return cache;
  }

  // Every entry in place, the dropped ones marked as padding.
  static KvCache WithHoles() {
    KvCache cache = Dense();
    c10::InferenceMode guard;
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      cache.Reset(l, cache.Keys(l).clone(), cache.Values(l).clone(), cache.Positions(l).clone(), Keep(l));
    }
    return cache;
  }

  static torch::Tensor Continue(KvCache& cache) {
    torch::Tensor ids = Ref("continuation_ids");
    const int64_t m = ids.size(0), start = cache.next_position();
    ForwardOptions fo;
    for (int64_t i = 0; i < m; ++i) fo.logits_for.push_back(i);
    auto out = model_->Forward(ids, torch::arange(start, start + m, torch::kInt64), cache, fo);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? out->logits : torch::Tensor();
  }

  static LlamaModel* model_;
  static SafetensorsWeights* ref_;
};

LlamaModel* RaggedCacheTest::model_ = nullptr;
SafetensorsWeights* RaggedCacheTest::ref_ = nullptr;

TEST_F(RaggedCacheTest, CompactedHeadsMatchTheMaskedReference) {
  KvCache cache = Compacted();
  ASSERT_TRUE(cache.ragged());
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    EXPECT_EQ(cache.HeadLengths(l), ToVector(Keep(l).sum(1))) << "layer " << l;
    EXPECT_EQ(cache.length(l), Keep(l).sum(1).max().item<int64_t>()) << "a layer holds only its fullest head";
  }
  EXPECT_EQ(cache.Entries(), [] {
    int64_t total = 0;
    for (int64_t l = 0; l < model_->config().num_layers; ++l) total += Keep(l).sum().item<int64_t>();
    return total;
  }());
  torch::Tensor want = Ref("continuation_logits");
  EXPECT_LE(RelativeError(Continue(cache), want), kTolerance);
}

TEST_F(RaggedCacheTest, HolesInPlaceMatchTheMaskedReference) {
  KvCache cache = WithHoles();
  EXPECT_LE(RelativeError(Continue(cache), Ref("continuation_logits")), kTolerance);
}

TEST_F(RaggedCacheTest, TheDenseCacheMissesTheReference) {
  KvCache cache = Dense();
  EXPECT_GT(RelativeError(Continue(cache), Ref("continuation_logits")), 20 * kTolerance)
      << "the masks must change the logits for this test to mean anything";
}

TEST_F(RaggedCacheTest, GreedyDecodingMatchesTheMaskedReference) {
  KvCache cache = Compacted();
  GreedyOptions go;
  go.max_new_tokens = Ref("greedy_tokens").size(0);
  auto tokens = GenerateGreedy(*model_, ToVector(Ref("continuation_ids")), cache, go);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, ToVector(Ref("greedy_tokens")));
}

TEST_F(RaggedCacheTest, KvcFilesKeepEachHeadsEntriesAndNoPadding) {
  KvCache cache = Compacted();
  for (KvcDtype dtype : {KvcDtype::kF32, KvcDtype::kInt8}) {
    auto bytes = EncodeKvCache(cache, KvcProvenance{}, KvcEncodeOptions{.dtype = dtype});
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    auto decoded = DecodeKvCache(*bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    KvCache& back = decoded->cache;
    uint64_t stored = 0;
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      EXPECT_EQ(back.HeadLengths(l), cache.HeadLengths(l));
      for (int64_t h = 0; h < cache.shape().kv_heads; ++h) {
        stored += decoded->header.length(static_cast<uint32_t>(l), static_cast<uint32_t>(h));
      }
      torch::Tensor valid = cache.Valid(l);
      ASSERT_TRUE(valid.defined());
      EXPECT_TRUE(torch::equal(back.Valid(l), valid));
      EXPECT_TRUE(torch::equal(back.Positions(l), cache.Positions(l)));
      EXPECT_TRUE((back.Positions(l).masked_select(valid.logical_not()) == -1).all().item<bool>());
      if (dtype == KvcDtype::kF32) {
        EXPECT_TRUE(torch::equal(back.Keys(l).index({valid}), cache.Keys(l).index({valid})));
        EXPECT_TRUE(torch::equal(back.Values(l).index({valid}), cache.Values(l).index({valid})));
      }
    }
    EXPECT_EQ(static_cast<int64_t>(stored), cache.Entries()) << "the file holds every kept entry and no padding";
    if (dtype == KvcDtype::kF32) {
      EXPECT_LE(RelativeError(Continue(back), Ref("continuation_logits")), kTolerance);
    } else {
      // int8 only approximates; it must still be far closer to the masked reference than the dense cache is
      // (a scale applied to the wrong head's entries would not be).
      KvCache dense = Dense();
      const double dense_error = RelativeError(Continue(dense), Ref("continuation_logits"));
      EXPECT_LE(RelativeError(Continue(back), Ref("continuation_logits")), dense_error / 4);
    }
  }
}

TEST_F(RaggedCacheTest, ComposedRaggedCachesKeepTheirPaddingMasked) {
  // A ragged cache composed after itself: the second copy's keys move on by the first's slots, so the
  // composition must decode like a dense composition of the same entries would: each part's real entries
  // visible, padding of both hidden.
  KvCache a = Compacted();
  a.set_key_rotation(KeyRotation::kOriginal);
  auto composed = ComposeCaches({&a, &a}, model_->rope());
  ASSERT_TRUE(composed.ok()) << composed.status();
  for (int64_t l = 0; l < a.num_layers(); ++l) {
    EXPECT_EQ(composed->length(l), 2 * a.length(l));
    std::vector<int64_t> twice;
    for (int64_t n : a.HeadLengths(l)) twice.push_back(2 * n);
    EXPECT_EQ(composed->HeadLengths(l), twice);
  }
  EXPECT_EQ(composed->Entries(), 2 * a.Entries());
  EXPECT_EQ(composed->next_position(), composed->length());
}

}  // namespace
}  // namespace kvc
