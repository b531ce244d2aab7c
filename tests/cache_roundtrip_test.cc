// The whole cache path on SmolLM2: compress -> .kvc bytes -> store (memory, file, redis) -> load -> decode
// gives exactly the tokens that decoding from the in-memory cache gives.
#include <filesystem>

#include "compressor/format/kv_cache_adapter.h"
#include "compressor/generate/generator.h"
#include "compressor/kv/compose.h"
#include "compressor/methods/compression.h"
#include "compressor/tokenizer/chat_template.h"
#include "compressor/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "service/store/cache_store.h"
#include "service/store/redis_server_for_test.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

constexpr char kDoc1[] =
    "The lighthouse on Marrow Point was built in 1871 by the engineer Ada Quill. Its lamp burned whale oil "
    "until 1902, when it was converted to kerosene. The keeper's log records a storm in 1889 that lasted "
    "nine days. The tower is 34 metres tall and painted in red and white bands.";
constexpr char kDoc2[] =
    "The village of Tarn Hollow holds a market every Thursday. Its bakery, run by the Ferris family since "
    "1950, is known for a rye bread baked with caraway. The river Lune floods the lower meadow most springs.";

class CacheRoundTripTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = kvc::testing::EnvOr("KVC_SMOLLM2_GGUF", "");
    ASSERT_FALSE(path.empty()) << "KVC_SMOLLM2_GGUF is not set";
    auto m = LlamaModel::Load(path);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->release();
    auto t = LoadTokenizer(path);
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = t->release();
    auto g = Generator::Create(model_, tokenizer_);
    ASSERT_TRUE(g.ok()) << g.status();
    generator_ = g->release();
    dir_ = new std::string(std::filesystem::temp_directory_path() / ("kvc-roundtrip-" + std::to_string(getpid())));
    auto r = kvc::store_testing::RedisServerForTest::Start(*dir_ + "/redis");
    ASSERT_TRUE(r.ok()) << r.status();
    redis_ = r->release();
  }
  static void TearDownTestSuite() {
    delete generator_;
    delete tokenizer_;
    delete model_;
    delete redis_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static EncodedCompressionPrompt Prompt(const char* doc, const char* question) {
    auto p = EncodeCompressionPrompt(*tokenizer_, ChatFormat::kChatMl, "Answer using only the context.", doc, question);
    EXPECT_TRUE(p.ok()) << p.status();
    return *p;
  }

  static CompressionResult Compress(const EncodedCompressionPrompt& p, const std::string& method, double ratio) {
    CompressionInput in;
    in.model = model_;
    in.context = p.context;
    in.protected_prefix = p.protected_prefix;
    in.suffix = p.suffix;
    CompressionSpec spec;
    spec.method = method;
    spec.ratio = method == "none" ? 0 : ratio;
    auto r = (*CreateCompressionMethod(spec))->Compress(in);
    EXPECT_TRUE(r.ok()) << r.status();
    return std::move(*r);
  }

  static std::vector<int64_t> Decode(const std::vector<const KvCache*>& caches, const std::vector<int64_t>& suffix) {
    GenerationRequest req;
    req.caches = caches;
    req.suffix = suffix;
    req.sampling.max_tokens = 24;
    auto r = generator_->Generate(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->tokens : std::vector<int64_t>{};
  }

  static std::vector<std::unique_ptr<CacheStore>> Stores() {
    std::vector<std::unique_ptr<CacheStore>> out;
    for (const std::string& uri : {std::string("memory://"), "file://" + *dir_ + "/files", redis_->Uri()}) {
      auto s = OpenCacheStore(uri, StoreOptions{});
      EXPECT_TRUE(s.ok()) << uri << ": " << s.status();
      if (s.ok()) out.push_back(std::move(*s));
    }
    return out;
  }

  static KvCache Load(CacheStore& store, const std::string& id) {
    auto bytes = store.Get(id);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    KvcDecodeOptions o;
    o.expected_fingerprint = model_->fingerprint();
    o.dtype = model_->dtype();
    auto d = DecodeKvCache(*bytes, o);
    EXPECT_TRUE(d.ok()) << d.status();
    return std::move(d->cache);
  }

  static KvcProvenance Provenance(const EncodedCompressionPrompt& p) {
    KvcProvenance prov;
    prov.model_name = model_->config().name;
    prov.rope = RopeMetadata(model_->config());
    prov.tokens_in = p.context.size();
    return prov;
  }

  static inline LlamaModel* model_ = nullptr;
  static inline Tokenizer* tokenizer_ = nullptr;
  static inline Generator* generator_ = nullptr;
  static inline kvc::store_testing::RedisServerForTest* redis_ = nullptr;
  static inline std::string* dir_ = nullptr;
};

TEST_F(CacheRoundTripTest, EveryStoreAndCodecGivesTheSameTokens) {
  const auto p = Prompt(kDoc1, "Who built the lighthouse?");
  const std::string id(64, 'c');
  for (const std::string method : {"finch", "snapkv"}) {
    CompressionResult r = Compress(p, method, 2);
    const auto want = Decode({&r.cache}, p.suffix);
    ASSERT_FALSE(want.empty());
    for (auto& store : Stores()) {
      for (KvcCodec codec : {KvcCodec::kNone, KvcCodec::kZstd}) {
        SCOPED_TRACE(method + " via " + store->backend() + ", codec " + KvcCodecName(codec));
        auto bytes = EncodeKvCache(r.cache, Provenance(p), {KvcDtype::kF32, codec});
        ASSERT_TRUE(bytes.ok()) << bytes.status();
        ASSERT_TRUE(store->Put(id, *bytes).ok());
        KvCache loaded = Load(*store, id);
        EXPECT_EQ(Decode({&loaded}, p.suffix), want);
      }
    }
  }
}

TEST_F(CacheRoundTripTest, Bf16FileDecodesLikeTheBf16CacheInMemory) {
  const auto p = Prompt(kDoc1, "How tall is the tower?");
  CompressionResult r = Compress(p, "finch", 2);
  auto bf16 = CopyCache(r.cache, torch::kBFloat16, torch::kCPU);
  ASSERT_TRUE(bf16.ok());
  const auto want = Decode({&*bf16}, p.suffix);
  auto stores = Stores();
  CacheStore& file = *stores[1];
  auto bytes = EncodeKvCache(r.cache, Provenance(p), {KvcDtype::kBF16, KvcCodec::kZstd});
  ASSERT_TRUE(bytes.ok());
  ASSERT_TRUE(file.Put(std::string(64, 'd'), *bytes).ok());
  KvCache loaded = Load(file, std::string(64, 'd'));
  EXPECT_EQ(Decode({&loaded}, p.suffix), want);
}

TEST_F(CacheRoundTripTest, ComposedCachesFromTheStoreDecodeLikeInMemory) {
  // Two documents compressed apart (query-agnostic), composed at generation time.
  const auto p1 = Prompt(kDoc1, "unused");
  const auto p2 = Prompt(kDoc2, "unused");
  CompressionResult a = Compress(p1, "knorm", 2), b = Compress(p2, "knorm", 2);
  const auto question = Prompt("", "What does the bakery bake, and who built the lighthouse?").suffix;
  const auto want = Decode({&a.cache, &b.cache}, question);
  for (auto& store : Stores()) {
    SCOPED_TRACE(store->backend());
    ASSERT_TRUE(store->Put(std::string(64, '1'), *EncodeKvCache(a.cache, Provenance(p1))).ok());
    ASSERT_TRUE(store->Put(std::string(64, '2'), *EncodeKvCache(b.cache, Provenance(p2))).ok());
    KvCache la = Load(*store, std::string(64, '1')), lb = Load(*store, std::string(64, '2'));
    EXPECT_EQ(Decode({&la, &lb}, question), want);
  }
}

}  // namespace
}  // namespace kvc
