// KvCache <-> .kvc bytes on a tiny random model: exact round trips for f32, exact casts for bf16/f16,
// bounded error for int8, and decoding from a loaded cache that matches decoding from the original.
#include "compressor/format/kv_cache_adapter.h"
#include "compressor/methods/compression.h"
#include "compressor/model/greedy.h"
#include "gtest/gtest.h"
#include "tests/support/tiny_llama_test.h"

namespace kvc {
namespace {

class KvCacheAdapterTest : public kvc::testing::TinyLlamaTest {
 protected:

  static CompressionResult Compress(const std::string& method, double ratio) {
    CompressionInput in;
    in.model = model_;
    for (int64_t i = 0; i < 300; ++i) in.context.push_back((i * 7919 + 13) % 512);
    in.suffix = Suffix();
    in.protected_prefix = 4;
    CompressionSpec spec;
    spec.method = method;
    spec.ratio = ratio;
    if (method == "finch") spec.options["chunk_tokens"] = "128";
    auto r = (*CreateCompressionMethod(spec))->Compress(in);
    EXPECT_TRUE(r.ok()) << r.status();
    return std::move(*r);
  }
  static std::vector<int64_t> Suffix() { return {5, 77, 301, 12, 9, 400}; }

  static KvcProvenance Provenance() {
    KvcProvenance p;
    p.model_name = model_->config().name;
    p.rope = RopeMetadata(model_->config());
    p.spec = {{"method", "finch"}, {"ratio", 4.0}};
    p.tokens_in = 300;
    return p;
  }

};
void ExpectSameCache(const KvCache& a, const KvCache& b, double tol) {
  ASSERT_EQ(a.num_layers(), b.num_layers());
  EXPECT_EQ(a.next_position(), b.next_position());
  EXPECT_EQ(a.key_rotation(), b.key_rotation());
  EXPECT_EQ(a.model_fingerprint(), b.model_fingerprint());
  for (int64_t l = 0; l < a.num_layers(); ++l) {
    ASSERT_EQ(a.length(l), b.length(l));
    EXPECT_TRUE(torch::equal(a.Positions(l), b.Positions(l))) << "layer " << l;
    auto ka = a.Keys(l).to(torch::kFloat32), kb = b.Keys(l).to(torch::kFloat32);
    auto va = a.Values(l).to(torch::kFloat32), vb = b.Values(l).to(torch::kFloat32);
    EXPECT_LE((ka - kb).abs().max().item<double>(), tol) << "layer " << l;
    EXPECT_LE((va - vb).abs().max().item<double>(), tol) << "layer " << l;
  }
}

TEST_F(KvCacheAdapterTest, F32RoundTripIsExactAndDecodesTheSameTokens) {
  for (const std::string method : {"finch", "snapkv", "none"}) {
    SCOPED_TRACE(method);
    CompressionResult r = Compress(method, 4);
    for (KvcCodec codec : {KvcCodec::kNone, KvcCodec::kZstd}) {
      auto bytes = EncodeKvCache(r.cache, Provenance(), {KvcDtype::kF32, codec});
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      KvcDecodeOptions o;
      o.expected_fingerprint = model_->fingerprint();
      auto d = DecodeKvCache(*bytes, o);
      ASSERT_TRUE(d.ok()) << d.status();
      ExpectSameCache(r.cache, d->cache, 0);
      EXPECT_EQ(d->header.tokens_in, 300u);
      EXPECT_EQ(d->header.tokens_out, static_cast<uint64_t>(r.cache.length()));
      EXPECT_EQ(d->header.metadata["spec"]["method"], "finch");

      GreedyOptions g;
      g.max_new_tokens = 12;
      KvCache copy_a = Compress(method, 4).cache;
      auto want = GenerateGreedy(*model_, Suffix(), copy_a, g);
      auto got = GenerateGreedy(*model_, Suffix(), d->cache, g);
      ASSERT_TRUE(want.ok() && got.ok());
      EXPECT_EQ(*want, *got);
    }
  }
}

TEST_F(KvCacheAdapterTest, HalfTypesAreExactCasts) {
  CompressionResult r = Compress("finch", 4);
  for (auto [dtype, type] : {std::pair{KvcDtype::kBF16, torch::kBFloat16}, std::pair{KvcDtype::kF16, torch::kFloat16}}) {
    auto bytes = EncodeKvCache(r.cache, Provenance(), {dtype, KvcCodec::kZstd});
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    auto d = DecodeKvCache(*bytes);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->cache.shape().dtype, type);
    for (int64_t l = 0; l < r.cache.num_layers(); ++l) {
      EXPECT_TRUE(torch::equal(d->cache.Keys(l), r.cache.Keys(l).to(type)));
      EXPECT_TRUE(torch::equal(d->cache.Values(l), r.cache.Values(l).to(type)));
    }
  }
}

TEST_F(KvCacheAdapterTest, Int8ErrorStaysWithinHalfAStep) {
  CompressionResult r = Compress("finch", 2);
  auto bytes = EncodeKvCache(r.cache, Provenance(), {KvcDtype::kInt8, KvcCodec::kNone});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto f32 = EncodeKvCache(r.cache, Provenance(), {KvcDtype::kF32, KvcCodec::kNone});
  EXPECT_LT(bytes->size() * 3, f32->size());  // about a quarter, plus scales
  auto d = DecodeKvCache(*bytes);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->cache.shape().dtype, torch::kFloat32);
  for (int64_t l = 0; l < r.cache.num_layers(); ++l) {
    torch::Tensor k = r.cache.Keys(l), v = r.cache.Values(l);
    torch::Tensor k_step = k.abs().amax(1, true) / 127, v_step = v.abs().amax(2, true) / 127;
    EXPECT_TRUE(((d->cache.Keys(l) - k).abs() <= k_step * 0.5 + 1e-6).all().item<bool>()) << "layer " << l;
    EXPECT_TRUE(((d->cache.Values(l) - v).abs() <= v_step * 0.5 + 1e-6).all().item<bool>()) << "layer " << l;
  }
}

TEST_F(KvCacheAdapterTest, RefusesOtherModelsAndCachesWithoutFingerprint) {
  CompressionResult r = Compress("snapkv", 4);
  auto bytes = EncodeKvCache(r.cache, Provenance());
  ASSERT_TRUE(bytes.ok());
  KvcDecodeOptions o;
  o.expected_fingerprint = std::string(64, 'b');
  auto d = DecodeKvCache(*bytes, o);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition) << d.status();

  KvCache anonymous(r.cache.shape());
  EXPECT_EQ(EncodeKvCache(anonymous, Provenance()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(KvCacheAdapterTest, EmptyCacheRoundTrips) {
  KvCache empty = model_->NewCache();
  for (KvcDtype dt : {KvcDtype::kF32, KvcDtype::kInt8}) {
    auto bytes = EncodeKvCache(empty, Provenance(), {dt, KvcCodec::kZstd});
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    auto d = DecodeKvCache(*bytes);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->cache.length(), 0);
  }
}

}  // namespace
}  // namespace kvc
