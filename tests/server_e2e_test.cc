// End to end: the real kvc-server binary on a free port with the tiny_chat model and a file store, every RPC's
// happy path through the generated stubs, plus health per role, server reflection, the request id echo and
// the metrics endpoint.
#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/kvc_test_client.h"
#include "tests/support/server_process.h"
#include "tests/support/testdata.h"

namespace kvc::testing {
namespace {

using ::testing::Contains;
using ::testing::Each;
using ::testing::Le;
using ::testing::SizeIs;

const char kQuestion[] = "What is the capital of France?";

bool IsCacheId(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

v1::Document TextDoc(const std::string& text, const std::string& label = "") {
  v1::Document d;
  d.set_text(text);
  if (!label.empty()) d.set_id(label);
  return d;
}

v1::CompressionSpec Spec(const std::string& method, double ratio,
                         std::vector<std::pair<std::string, std::string>> options = {}) {
  v1::CompressionSpec s;
  s.set_method(method);
  s.set_ratio(ratio);
  for (auto& [k, v] : options) (*s.mutable_options())[k] = v;
  return s;
}

class ServerE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerProcessOptions o;
    o.args = {"--model", TestData("tiny_chat"), "--metrics-listen", "127.0.0.1:0"};
    auto server = ServerProcess::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    stubs_ = new KvcStubs(server_->NewChannel());
    grpc::ClientContext ctx;
    Configure(ctx, {});
    info_ = new v1::ModelInfo();
    grpc::Status s = stubs_->compressor->GetModelInfo(&ctx, v1::GetModelInfoRequest(), info_);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  static void TearDownTestSuite() {
    delete stubs_;
    stubs_ = nullptr;
    if (server_ != nullptr) {
      absl::StatusOr<int> code = server_->Stop();
      EXPECT_TRUE(code.ok()) << code.status();
      if (code.ok()) {
        EXPECT_EQ(*code, 0) << server_->Log();
      }
    }
    delete server_;
    server_ = nullptr;
    delete info_;
    info_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  void TearDown() override {
    if (HasFailure()) ADD_FAILURE() << "kvc-server log:\n" << server_->Log();
  }

  static grpc::Status Compress(const v1::CompressRequest& request, v1::CompressResponse* response,
                               const CallOptions& options = {}) {
    grpc::ClientContext ctx;
    Configure(ctx, options);
    return stubs_->compressor->Compress(&ctx, request, response);
  }
  static grpc::Status Precompute(const v1::PrecomputeRequest& request, v1::PrecomputeResponse* response) {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    return stubs_->compressor->Precompute(&ctx, request, response);
  }
  static v1::CompressRequest FinchRequest(const std::string& salt) {
    v1::CompressRequest r;
    *r.add_documents() = TextDoc("The capital of France is Paris. " + FillerText(120, 11) + " " + salt);
    *r.add_documents() = TextDoc("The report was written by the finance team in March. " + FillerText(80, 12));
    r.set_query(kQuestion);
    *r.mutable_spec() = Spec("finch", 2, {{"chunk_tokens", "64"}});
    return r;
  }

  inline static ServerProcess* server_ = nullptr;
  inline static KvcStubs* stubs_ = nullptr;
  inline static v1::ModelInfo* info_ = nullptr;
};

TEST_F(ServerE2eTest, HealthIsServingForEveryRoleAndTheServer) {
  for (const std::string service : {"", "kvc.v1.Compressor", "kvc.v1.CacheService", "kvc.v1.Generator"}) {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = stubs_->health->Check(&ctx, request, &response);
    ASSERT_TRUE(s.ok()) << "health '" << service << "': " << s.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << "health '" << service << "'";
  }
  grpc::ClientContext ctx;
  Configure(ctx, {});
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("kvc.v1.NoSuchRole");
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_EQ(stubs_->health->Check(&ctx, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerE2eTest, ReflectionListsTheServices) {
  absl::StatusOr<std::vector<std::string>> services = ReflectionServices(*stubs_->channel);
  ASSERT_TRUE(services.ok()) << services.status();
  for (const char* name : {"kvc.v1.Compressor", "kvc.v1.CacheService", "kvc.v1.Generator", "grpc.health.v1.Health"}) {
    EXPECT_THAT(*services, Contains(std::string(name)));
  }
}

TEST_F(ServerE2eTest, GetModelInfoDescribesTinyChat) {
  const v1::ModelInfo& m = *info_;
  EXPECT_EQ(m.name(), "tiny-chat");
  EXPECT_TRUE(IsCacheId(m.fingerprint())) << m.fingerprint();
  EXPECT_EQ(m.architecture(), "llama");
  EXPECT_EQ(m.num_layers(), 2);
  EXPECT_EQ(m.num_heads(), 4);
  EXPECT_EQ(m.num_kv_heads(), 2);
  EXPECT_EQ(m.head_dim(), 16);
  // A byte-level BPE trained to at most 1024 entries: the 256 byte symbols, the specials and some merges.
  EXPECT_GT(m.vocab_size(), 259);
  EXPECT_LE(m.vocab_size(), 1024);
  EXPECT_EQ(m.max_position_embeddings(), 4096);
  EXPECT_EQ(m.device(), "cpu");
  EXPECT_EQ(m.chat_format(), "chatml");
  EXPECT_EQ(m.bos_token_id(), 1);
  EXPECT_THAT(m.eos_token_ids(), Contains(2));
  EXPECT_FALSE(m.format_version().empty());
  std::vector<std::string> names;
  for (const v1::MethodInfo& method : m.methods()) {
    names.push_back(method.name());
    if (method.name() == "finch") {
      EXPECT_TRUE(method.query_aware());
      std::set<std::string> options;
      for (const auto& o : method.options()) options.insert(o.name());
      EXPECT_TRUE(options.count("chunk_tokens")) << "finch options";
    }
    if (method.name() == "knorm") {
      EXPECT_FALSE(method.query_aware());
    }
  }
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const char* want : {"focus", "finch", "snapkv", "streaming_llm", "knorm", "random", "truncate", "none"}) {
    EXPECT_THAT(names, Contains(std::string(want)));
  }
  EXPECT_GT(m.limits().max_context_tokens(), 0);
  EXPECT_GT(m.limits().max_documents(), 0);
  EXPECT_GT(m.limits().max_message_bytes(), 0);
  EXPECT_GT(m.limits().max_queue_tokens(), 0);
}

TEST_F(ServerE2eTest, CompressTextDocumentsThenTheSameCallIsAHit) {
  v1::CompressRequest request = FinchRequest("first");
  request.set_model("tiny-chat");  // the name is accepted ...
  v1::CompressResponse first;
  grpc::Status s = Compress(request, &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(IsCacheId(first.cache_id())) << first.cache_id();
  EXPECT_FALSE(first.cache_hit());
  const v1::CacheInfo& info = first.info();
  EXPECT_EQ(info.cache_id(), first.cache_id());
  EXPECT_EQ(info.model(), "tiny-chat");
  EXPECT_EQ(info.model_fingerprint(), info_->fingerprint());
  EXPECT_EQ(info.spec().method(), "finch");
  EXPECT_GT(info.tokens_in(), 200);
  EXPECT_GT(info.prefix_tokens(), 0);
  // Ratio 2 keeps about half the context (the protected prefix always stays).
  EXPECT_LE(info.tokens_out(), info.tokens_in() / 2 + info.prefix_tokens() + 1);
  EXPECT_GE(info.tokens_out(), info.tokens_in() / 2 - 1);
  EXPECT_EQ(info.layers(), 2);
  EXPECT_EQ(info.kv_heads(), 2);
  EXPECT_EQ(info.head_dim(), 16);
  EXPECT_EQ(info.dtype(), v1::CACHE_DTYPE_F32);
  EXPECT_EQ(info.codec(), v1::CACHE_CODEC_NONE);
  EXPECT_GT(info.bytes(), 0);
  EXPECT_GT(info.timings().prefill_seconds(), 0);
  EXPECT_GT(info.timings().total_seconds(), 0);

  // ... and so is the fingerprint; the request is otherwise identical, so it is a hit with no work.
  request.set_model(info_->fingerprint());
  v1::CompressResponse second;
  s = Compress(request, &second);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(second.cache_hit());
  EXPECT_EQ(second.cache_id(), first.cache_id());
  EXPECT_EQ(second.info().tokens_out(), info.tokens_out());
  EXPECT_EQ(second.info().bytes(), info.bytes());
  const v1::Timings& t = second.info().timings();
  EXPECT_EQ(t.tokenize_seconds(), 0);
  EXPECT_EQ(t.prefill_seconds(), 0);
  EXPECT_EQ(t.compress_seconds(), 0);
  EXPECT_EQ(t.serialize_seconds(), 0);
  EXPECT_GT(t.total_seconds(), 0);

  // A caller label never changes the id.
  request.mutable_documents(0)->set_id("doc-17");
  v1::CompressResponse labelled;
  ASSERT_TRUE(Compress(request, &labelled).ok());
  EXPECT_TRUE(labelled.cache_hit());
  EXPECT_EQ(labelled.cache_id(), first.cache_id());

  // A different query is a different cache for a query-aware method.
  request.set_query("Who wrote the report?");
  v1::CompressResponse other;
  ASSERT_TRUE(Compress(request, &other).ok());
  EXPECT_FALSE(other.cache_hit());
  EXPECT_NE(other.cache_id(), first.cache_id());
}

TEST_F(ServerE2eTest, CompressTokenIdDocumentsWithTargetTokens) {
  v1::CompressRequest request;
  v1::TokenIds* ids = request.add_documents()->mutable_token_ids();
  for (int i = 0; i < 300; ++i) ids->add_ids(3 + (i * 37) % (info_->vocab_size() - 3));
  *request.add_documents()->mutable_token_ids() = *ids;
  request.mutable_spec()->set_method("knorm");
  request.mutable_spec()->set_target_tokens(100);
  request.set_cache_dtype(v1::CACHE_DTYPE_BF16);
  request.set_cache_codec(v1::CACHE_CODEC_ZSTD);
  v1::CompressResponse first;
  grpc::Status s = Compress(request, &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(first.cache_hit());
  EXPECT_EQ(first.info().spec().method(), "knorm");
  EXPECT_GE(first.info().tokens_in(), 600);
  EXPECT_EQ(first.info().tokens_out(), 100);
  EXPECT_EQ(first.info().dtype(), v1::CACHE_DTYPE_BF16);
  EXPECT_EQ(first.info().codec(), v1::CACHE_CODEC_ZSTD);
  // knorm ignores the query: adding one changes neither the id nor the work.
  request.set_query("anything at all");
  v1::CompressResponse second;
  ASSERT_TRUE(Compress(request, &second).ok());
  EXPECT_TRUE(second.cache_hit());
  EXPECT_EQ(second.cache_id(), first.cache_id());
  EXPECT_EQ(second.info().timings().prefill_seconds(), 0);
}

TEST_F(ServerE2eTest, PrecomputeFullThenCompressFromDocumentCacheIdsThenGenerate) {
  v1::PrecomputeRequest pre;
  *pre.add_documents() = TextDoc("The capital of France is Paris. " + FillerText(150, 21), "paris");
  *pre.add_documents() = TextDoc("Water boils at one hundred degrees Celsius at sea level. " + FillerText(150, 22));
  pre.set_mode(v1::PRECOMPUTE_MODE_FULL);
  v1::PrecomputeResponse full;
  grpc::Status s = Precompute(pre, &full);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_THAT(full.results(), SizeIs(2));
  EXPECT_EQ(full.results(0).document_id(), "paris");
  EXPECT_FALSE(full.results(1).has_document_id());
  int64_t composed = 0;
  for (int i = 0; i < 2; ++i) {
    const v1::PrecomputeResult& r = full.results(i);
    EXPECT_TRUE(IsCacheId(r.cache_id()));
    EXPECT_FALSE(r.cache_hit());
    EXPECT_EQ(r.info().spec().method(), "none");
    EXPECT_EQ(r.info().tokens_in(), r.info().tokens_out());
    composed += i == 0 ? r.info().tokens_in() : r.info().tokens_in() - r.info().prefix_tokens();
  }
  EXPECT_NE(full.results(0).cache_id(), full.results(1).cache_id());
  v1::PrecomputeResponse again;
  ASSERT_TRUE(Precompute(pre, &again).ok());
  ASSERT_THAT(again.results(), SizeIs(2));
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(again.results(i).cache_hit());
    EXPECT_EQ(again.results(i).cache_id(), full.results(i).cache_id());
  }

  v1::CompressRequest request;
  request.add_document_cache_ids(full.results(0).cache_id());
  request.add_document_cache_ids(full.results(1).cache_id());
  request.set_query(kQuestion);
  *request.mutable_spec() = Spec("finch", 4);
  v1::CompressResponse compressed;
  s = Compress(request, &compressed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(compressed.cache_hit());
  EXPECT_EQ(compressed.info().tokens_in(), composed);
  EXPECT_LT(compressed.info().tokens_out(), composed / 2);
  v1::CompressResponse hit;
  ASSERT_TRUE(Compress(request, &hit).ok());
  EXPECT_TRUE(hit.cache_hit());
  EXPECT_EQ(hit.cache_id(), compressed.cache_id());

  v1::GenerateRequest generate;
  generate.add_cache_ids(compressed.cache_id());
  generate.set_query(kQuestion);
  generate.mutable_sampling()->set_max_tokens(12);
  GenerateResult g = Generate(*stubs_->generator, generate);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.usage_messages, 1);
  EXPECT_EQ(g.usage.cached_tokens(), compressed.info().tokens_out());

  // The full caches themselves can be composed and decoded from.
  generate.clear_cache_ids();
  generate.add_cache_ids(full.results(0).cache_id());
  generate.add_cache_ids(full.results(1).cache_id());
  g = Generate(*stubs_->generator, generate);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.usage.cached_tokens(), composed);
}

TEST_F(ServerE2eTest, PrecomputeQueryAgnosticServesGenerateDirectly) {
  v1::PrecomputeRequest pre;
  *pre.add_documents() = TextDoc("The meeting starts at nine o'clock on Monday. " + FillerText(200, 31), "meeting");
  pre.set_mode(v1::PRECOMPUTE_MODE_QUERY_AGNOSTIC);
  *pre.mutable_spec() = Spec("streaming_llm", 4);
  v1::PrecomputeResponse response;
  grpc::Status s = Precompute(pre, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_THAT(response.results(), SizeIs(1));
  const v1::PrecomputeResult& r = response.results(0);
  EXPECT_EQ(r.document_id(), "meeting");
  EXPECT_EQ(r.info().spec().method(), "streaming_llm");
  EXPECT_LT(r.info().tokens_out(), r.info().tokens_in() / 2);

  v1::GenerateRequest generate;
  generate.add_cache_ids(r.cache_id());
  generate.set_query("When does the meeting start?");
  generate.mutable_sampling()->set_max_tokens(6);
  generate.mutable_sampling()->set_stop_on_eos(false);
  GenerateResult g = Generate(*stubs_->generator, generate);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.usage.generated_tokens(), 6);
  EXPECT_EQ(g.usage.finish_reason(), v1::FINISH_REASON_LENGTH);
}

TEST_F(ServerE2eTest, GenerateStreamsDeltasThenExactlyOneUsage) {
  v1::CompressResponse compressed;
  ASSERT_TRUE(Compress(FinchRequest("generate"), &compressed).ok());
  v1::GenerateRequest request;
  request.add_cache_ids(compressed.cache_id());
  request.set_query(kQuestion);
  request.mutable_sampling()->set_max_tokens(24);
  GenerateResult g = Generate(*stubs_->generator, request);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.usage_messages, 1);
  EXPECT_TRUE(g.usage_last);
  const v1::Usage& u = g.usage;
  EXPECT_EQ(u.generated_tokens(), g.token_count);
  EXPECT_GE(u.generated_tokens(), 1);
  EXPECT_LE(u.generated_tokens(), 24);
  EXPECT_EQ(u.cached_tokens(), compressed.info().tokens_out());
  EXPECT_GT(u.prompt_tokens(), 0);
  if (u.generated_tokens() < 24) {
    EXPECT_EQ(u.finish_reason(), v1::FINISH_REASON_EOS);
  } else {
    EXPECT_THAT(u.finish_reason(), ::testing::AnyOf(v1::FINISH_REASON_LENGTH, v1::FINISH_REASON_EOS));
  }
  // The text is non-empty unless generation ended at once on EOS, whose token has no text.
  if (u.finish_reason() == v1::FINISH_REASON_LENGTH) {
    EXPECT_FALSE(g.text.empty());
  }
  EXPECT_GT(u.time_to_first_token_seconds(), 0);
  EXPECT_GT(u.timings().total_seconds(), 0);
  int32_t index = 0;
  for (const v1::TextDelta& d : g.deltas) {
    EXPECT_EQ(d.index(), index);
    EXPECT_GE(d.token_ids_size(), 1);
    for (int32_t id : d.token_ids()) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, info_->vocab_size());
    }
    index += d.token_ids_size();
  }

  // Greedy decoding is deterministic; seeded sampling is reproducible.
  GenerateResult again = Generate(*stubs_->generator, request);
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.text, g.text);
  EXPECT_EQ(again.token_count, g.token_count);
  request.mutable_sampling()->set_temperature(0.8);
  request.mutable_sampling()->set_top_p(0.9);
  request.mutable_sampling()->set_top_k(50);
  request.mutable_sampling()->set_seed(7);
  request.mutable_sampling()->set_stop_on_eos(false);
  GenerateResult sampled1 = Generate(*stubs_->generator, request);
  GenerateResult sampled2 = Generate(*stubs_->generator, request);
  ASSERT_TRUE(sampled1.status.ok()) << sampled1.status.error_message();
  ASSERT_TRUE(sampled2.status.ok()) << sampled2.status.error_message();
  EXPECT_EQ(sampled1.usage.generated_tokens(), 24);
  EXPECT_EQ(sampled1.usage.finish_reason(), v1::FINISH_REASON_LENGTH);
  std::vector<int32_t> t1, t2;
  for (const auto& d : sampled1.deltas) t1.insert(t1.end(), d.token_ids().begin(), d.token_ids().end());
  for (const auto& d : sampled2.deltas) t2.insert(t2.end(), d.token_ids().begin(), d.token_ids().end());
  EXPECT_EQ(t1, t2);
}

TEST_F(ServerE2eTest, CacheServiceGetPutStatListDelete) {
  // A FULL cache of ~2,500 tokens is over 1 MiB (2 layers x 2 heads x 16 x 4 bytes x K,V = 512 B/token).
  v1::PrecomputeRequest pre;
  *pre.add_documents() = TextDoc(FillerText(2300, 41));
  pre.set_mode(v1::PRECOMPUTE_MODE_FULL);
  v1::PrecomputeResponse made;
  grpc::Status s = Precompute(pre, &made);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string id = made.results(0).cache_id();
  const int64_t bytes = made.results(0).info().bytes();
  ASSERT_GT(bytes, 1 << 20);

  // Get: one header first, then data chunks of at most 1 MiB whose SHA-256 matches the header.
  v1::GetCacheRequest get;
  get.set_cache_id(id);
  GetResult got = GetCache(*stubs_->cache, get);
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  EXPECT_TRUE(got.header_first);
  EXPECT_EQ(got.header_messages, 1);
  EXPECT_EQ(got.header.cache_id(), id);
  EXPECT_EQ(got.header.total_bytes(), bytes);
  EXPECT_EQ(static_cast<int64_t>(got.value.size()), bytes);
  EXPECT_EQ(got.header.sha256(), Sha256Raw(got.value));
  EXPECT_THAT(got.chunk_sizes, Each(Le(size_t{1} << 20)));
  EXPECT_GE(got.chunk_sizes.size(), 2u);
  EXPECT_EQ(got.header.info().tokens_in(), made.results(0).info().tokens_in());
  EXPECT_EQ(got.header.info().model(), "tiny-chat");
  EXPECT_FALSE(got.header.info().has_timings());
  EXPECT_EQ(got.value.substr(0, 4), "KVC1") << "a .kvc starts with its magic";

  get.set_chunk_bytes(100000);
  GetResult small = GetCache(*stubs_->cache, get);
  ASSERT_TRUE(small.status.ok()) << small.status.error_message();
  EXPECT_THAT(small.chunk_sizes, Each(Le(size_t{100000})));
  EXPECT_EQ(small.chunk_sizes.size(), static_cast<size_t>((bytes + 99999) / 100000));
  EXPECT_EQ(small.value, got.value);

  // Stat without and with the header.
  v1::StatCacheRequest stat;
  stat.set_cache_id(id);
  v1::StatCacheResponse st;
  {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    ASSERT_TRUE(stubs_->cache->Stat(&ctx, stat, &st).ok());
  }
  EXPECT_EQ(st.entry().cache_id(), id);
  EXPECT_EQ(st.entry().bytes(), bytes);
  EXPECT_GT(st.entry().created().seconds(), 1600000000);
  EXPECT_FALSE(st.has_info());
  stat.set_include_info(true);
  {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    ASSERT_TRUE(stubs_->cache->Stat(&ctx, stat, &st).ok());
  }
  EXPECT_EQ(st.info().cache_id(), id);
  EXPECT_EQ(st.info().spec().method(), "none");

  // Put the same bytes back under the same id (replaced), and under a fresh id (new); chunks of 300 kB.
  v1::PutCacheResponse put;
  s = PutChunks(*stubs_->cache, PutStream(id, got.value, 300000), &put);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(put.cache_id(), id);
  EXPECT_TRUE(put.replaced());
  EXPECT_EQ(put.info().tokens_in(), made.results(0).info().tokens_in());
  std::string copy_id = id;
  std::reverse(copy_id.begin(), copy_id.end());
  s = PutChunks(*stubs_->cache, PutStream(copy_id, got.value), &put);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(put.replaced());
  GetResult copy = GetCache(*stubs_->cache, [&] {
    v1::GetCacheRequest r;
    r.set_cache_id(copy_id);
    return r;
  }());
  ASSERT_TRUE(copy.status.ok());
  EXPECT_EQ(copy.value, got.value);

  // List: by prefix, and page by page in ascending order.
  v1::ListCachesRequest list;
  list.set_prefix(copy_id.substr(0, 10));
  v1::ListCachesResponse listed;
  {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    ASSERT_TRUE(stubs_->cache->List(&ctx, list, &listed).ok());
  }
  ASSERT_THAT(listed.entries(), SizeIs(1));
  EXPECT_EQ(listed.entries(0).cache_id(), copy_id);
  EXPECT_EQ(listed.entries(0).bytes(), bytes);
  std::vector<std::string> all;
  list.clear_prefix();
  list.set_page_size(2);
  for (int pages = 0; pages < 1000; ++pages) {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    ASSERT_TRUE(stubs_->cache->List(&ctx, list, &listed).ok());
    EXPECT_LE(listed.entries_size(), 2);
    for (const auto& e : listed.entries()) all.push_back(e.cache_id());
    if (listed.next_page_token().empty()) break;
    list.set_page_token(listed.next_page_token());
  }
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), all.size()) << "pages overlap";
  EXPECT_THAT(all, Contains(id));
  EXPECT_THAT(all, Contains(copy_id));

  // Delete, after which the id is gone for every call.
  v1::DeleteCacheRequest del;
  del.set_cache_id(copy_id);
  v1::DeleteCacheResponse deleted;
  {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    ASSERT_TRUE(stubs_->cache->Delete(&ctx, del, &deleted).ok());
  }
  {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    stat.set_cache_id(copy_id);
    EXPECT_EQ(stubs_->cache->Stat(&ctx, stat, &st).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  v1::GetCacheRequest gone;
  gone.set_cache_id(copy_id);
  EXPECT_EQ(GetCache(*stubs_->cache, gone).status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerE2eTest, EchoesTheClientRequestId) {
  grpc::ClientContext ctx;
  Configure(ctx, {.request_id = "e2e-request-42"});
  v1::ModelInfo info;
  ASSERT_TRUE(stubs_->compressor->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).ok());
  auto md = ctx.GetServerInitialMetadata();
  auto it = md.find("x-request-id");
  ASSERT_NE(it, md.end());
  EXPECT_EQ(std::string(it->second.data(), it->second.size()), "e2e-request-42");
  // The server logs the id with the call.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!absl::StrContains(server_->Log(), "e2e-request-42") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(absl::StrContains(server_->Log(), "\"request_id\":\"e2e-request-42\""));
}

TEST_F(ServerE2eTest, MetricsCountRequestsByCode) {
  ASSERT_GT(server_->metrics_port(), 0);
  absl::StatusOr<std::string> before = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_TRUE(before.ok()) << before.status();
  const std::vector<std::pair<std::string, std::string>> ok = {{"rpc", "Compressor.Compress"}, {"code", "OK"}};
  const std::vector<std::pair<std::string, std::string>> bad = {{"rpc", "Compressor.Compress"},
                                                                {"code", "INVALID_ARGUMENT"}};
  const std::vector<std::pair<std::string, std::string>> missing = {{"rpc", "CacheService.Stat"},
                                                                    {"code", "NOT_FOUND"}};
  v1::CompressResponse response;
  ASSERT_TRUE(Compress(FinchRequest("metrics"), &response).ok());
  v1::CompressRequest empty;
  *empty.mutable_spec() = Spec("finch", 2);
  empty.set_query(kQuestion);
  EXPECT_EQ(Compress(empty, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::StatCacheRequest stat;
  stat.set_cache_id(std::string(64, '0'));
  v1::StatCacheResponse st;
  grpc::ClientContext ctx;
  Configure(ctx, {});
  EXPECT_EQ(stubs_->cache->Stat(&ctx, stat, &st).error_code(), grpc::StatusCode::NOT_FOUND);

  absl::StatusOr<std::string> after = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(MetricValue(*after, "kvc_requests_total", ok), MetricValue(*before, "kvc_requests_total", ok) + 1);
  EXPECT_EQ(MetricValue(*after, "kvc_requests_total", bad), MetricValue(*before, "kvc_requests_total", bad) + 1);
  EXPECT_EQ(MetricValue(*after, "kvc_requests_total", missing),
            MetricValue(*before, "kvc_requests_total", missing) + 1);
  EXPECT_GT(MetricValue(*after, "kvc_cache_misses_total", {}), 0);
  EXPECT_GT(MetricValue(*after, "kvc_prefill_tokens_total", {}), 0);
  EXPECT_EQ(MetricValue(*after, "kvc_model_info", {{"model", "tiny-chat"}}), 1);
  EXPECT_TRUE(absl::StrContains(*after, "kvc_request_seconds_bucket"));
}

// A server whose model cannot load exits 1 after logging why; Start reports that at once with the log.
TEST(ServerStartTest, AModelThatDoesNotLoadFailsTheStartWithTheLog) {
  const absl::Time start = absl::Now();
  auto server = ServerProcess::Start({.args = {"--model", TestData("no-such-model"), "--metrics-listen", ""}});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable) << server.status();
  EXPECT_TRUE(absl::StrContains(server.status().message(), "model load failed")) << server.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

}  // namespace
}  // namespace kvc::testing
