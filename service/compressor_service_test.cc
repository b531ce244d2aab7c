// CompressorServiceImpl behind a real in-process grpc::Server on a loopback port over a memory:// store,
// called through the generated stub, on the tiny_chat fixture (a tiny random Llama with a ChatML BPE
// tokenizer). Results are checked against the compressor library called directly on the context the API
// documents ([prefix][doc1 "\n\n" doc2]); repeated requests must be store hits; every documented error
// code is checked; queue overflow, deadlines and cancellation stop the work.
#include "service/compressor_service.h"

#include <chrono>
#include <functional>
#include <iostream>
#include <tuple>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "compressor/format/kv_cache_adapter.h"
#include "compressor/methods/compression.h"
#include "compressor/methods/options.h"
#include "service/cache_id.h"
#include "service/metrics.h"
#include "service/model_runtime.h"
#include "service/pause_points.h"
#include "service/scheduler.h"
#include "service/store/cache_store.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

using ::testing::HasSubstr;
using kvc::v1::CompressRequest;
using kvc::v1::CompressResponse;
using kvc::v1::PrecomputeRequest;
using kvc::v1::PrecomputeResponse;

constexpr char kDocA[] =
    "The report was written by the finance team in March and reviewed by the board in April. "
    "The meeting starts at nine o'clock on Monday morning in the second floor conference room.";
constexpr char kDocB[] =
    "The river flows through the old town, past the market, the library and the railway station. "
    "She planted tomatoes, beans and sunflowers in the garden behind the house.";
constexpr char kQuery[] = "Who wrote the report?";

// ~30 sentences per repeat; long enough that a finch run with tiny chunks takes a while.
std::string LongDocument(int repeats) {
  std::string text;
  for (int i = 0; i < repeats; ++i) {
    absl::StrAppend(&text, "Paragraph ", i, ". ", kDocA, " ", kDocB,
                    " Every document is split into chunks, and each chunk is scored against the query. ");
  }
  return text;
}

kvc::v1::Document TextDoc(const std::string& text, std::optional<std::string> id = std::nullopt) {
  kvc::v1::Document d;
  d.set_text(text);
  if (id) d.set_id(*id);
  return d;
}

kvc::v1::CompressionSpec Spec(const std::string& method, double ratio,
                              const std::map<std::string, std::string>& options = {}) {
  kvc::v1::CompressionSpec s;
  s.set_method(method);
  if (ratio > 0) s.set_ratio(ratio);
  for (const auto& [k, v] : options) (*s.mutable_options())[k] = v;
  return s;
}

CompressRequest FinchRequest() {
  CompressRequest r;
  *r.add_documents() = TextDoc(kDocA);
  *r.add_documents() = TextDoc(kDocB);
  r.set_query(kQuery);
  *r.mutable_spec() = Spec("finch", 4.0, {{"chunk_tokens", "32"}});
  return r;
}

std::string Scrape(prometheus::Registry& r) { return prometheus::TextSerializer().Serialize(r.Collect()); }

// The runtime is loaded once: every harness borrows it.
class CompressorServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ModelRuntimeOptions options;
    options.path = testing::TestData("tiny_chat");
    options.num_threads = 2;
    absl::StatusOr<std::unique_ptr<ModelRuntime>> r = ModelRuntime::Load(options);
    ASSERT_TRUE(r.ok()) << r.status();
    runtime_ = r->release();
  }
  static void TearDownTestSuite() {
    delete runtime_;
    runtime_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(runtime_, nullptr); }

  // A server with its own store, scheduler and metrics. Torn down server first (every call finishes), then
  // the service, the scheduler and the store.
  struct Harness {
    std::unique_ptr<TempPauseDir> pause_dir;  // declared first: it outlives the service; null without one
    std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
    std::unique_ptr<ServiceMetrics> metrics;
    std::unique_ptr<CacheStore> store;
    std::unique_ptr<Scheduler> scheduler;
    std::unique_ptr<CompressorServiceImpl> service;
    std::unique_ptr<grpc::Server> server;
    std::unique_ptr<kvc::v1::Compressor::Stub> stub;

    ~Harness() {
      if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(30));
      server.reset();
      service.reset();
      scheduler.reset();
    }
  };

  std::unique_ptr<Harness> Start(CompressorServiceOptions options = {}, SchedulerOptions scheduler_options = {}) {
    auto h = std::make_unique<Harness>();
    h->metrics = std::make_unique<ServiceMetrics>(*h->registry);
    absl::StatusOr<std::unique_ptr<CacheStore>> store = OpenCacheStore("memory://", {});
    EXPECT_TRUE(store.ok()) << store.status();
    h->store = *std::move(store);
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(scheduler_options);
    EXPECT_TRUE(scheduler.ok()) << scheduler.status();
    h->scheduler = *std::move(scheduler);
    if (options.limits.max_queue_tokens == 0) options.limits.max_queue_tokens = scheduler_options.max_queue_tokens;
    absl::StatusOr<std::unique_ptr<CompressorServiceImpl>> service = CompressorServiceImpl::Create(
        runtime_, h->scheduler.get(), h->store.get(), h->metrics.get(), options);
    EXPECT_TRUE(service.ok()) << service.status();
    h->service = *std::move(service);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(h->service.get());
    h->server = builder.BuildAndStart();
    EXPECT_NE(h->server, nullptr);
    EXPECT_GT(port, 0);
    h->stub = kvc::v1::Compressor::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    return h;
  }

  // Start, with the service holding calls at the pause points of a fresh directory (h->pause_dir).
  std::unique_ptr<Harness> StartWithPausePoints() {
    absl::StatusOr<std::unique_ptr<TempPauseDir>> dir = TempPauseDir::Create();
    EXPECT_TRUE(dir.ok()) << dir.status();
    if (!dir.ok()) return nullptr;
    CompressorServiceOptions options;
    options.pause_points = (*dir)->points();
    std::unique_ptr<Harness> h = Start(options);
    h->pause_dir = *std::move(dir);
    return h;
  }

  static grpc::Status Compress(Harness& h, const CompressRequest& request, CompressResponse* response,
                               absl::Duration timeout = absl::Seconds(120)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return h.stub->Compress(&ctx, request, response);
  }

  static grpc::Status Precompute(Harness& h, const PrecomputeRequest& request, PrecomputeResponse* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    return h.stub->Precompute(&ctx, request, response);
  }

  static std::vector<int64_t> Encode(absl::StatusOr<std::vector<int64_t>> ids) {
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int64_t>();
  }

  // [prefix][doc1 "\n\n" doc2 ...] as the API documents it, with the default system prompt.
  static std::vector<int64_t> Context(const std::vector<std::string>& docs, int64_t* prefix_len) {
    std::vector<int64_t> ctx = Encode(runtime_->EncodePrefix(kDefaultSystemPrompt));
    *prefix_len = static_cast<int64_t>(ctx.size());
    for (size_t i = 0; i < docs.size(); ++i) {
      if (i > 0) ctx.insert(ctx.end(), runtime_->document_separator().begin(), runtime_->document_separator().end());
      std::vector<int64_t> d = Encode(runtime_->EncodeDocument(docs[i]));
      ctx.insert(ctx.end(), d.begin(), d.end());
    }
    return ctx;
  }

  static DecodedKvCache Stored(Harness& h, const std::string& id) {
    absl::StatusOr<std::string> bytes = h.store->Get(id);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    absl::StatusOr<DecodedKvCache> decoded = DecodeKvCache(*bytes);
    EXPECT_TRUE(decoded.ok()) << decoded.status();
    return *std::move(decoded);
  }

  static int64_t StoredCount(Harness& h) {
    absl::StatusOr<ListPage> page = h.store->List("", CacheStore::kMaxPageSize, "");
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? static_cast<int64_t>(page->entries.size()) : -1;
  }

  // Waits until the scheduler holds no job, running or queued; returns how long that took.
  static absl::Duration WaitIdle(Scheduler& s, absl::Duration limit = absl::Seconds(60)) {
    const absl::Time start = absl::Now();
    while (absl::Now() - start < limit) {
      SchedulerStats st = s.stats();
      if (st.running_jobs == 0 && st.queued_jobs == 0) break;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return absl::Now() - start;
  }

  // Occupies the scheduler's only worker until the returned notification is notified.
  static std::shared_ptr<absl::Notification> BlockWorker(Scheduler& s) {
    auto release = std::make_shared<absl::Notification>();
    auto started = std::make_shared<absl::Notification>();
    Job job;
    job.cost_tokens = 0;
    job.run = [release, started](const JobStart&) {
      started->Notify();
      release->WaitForNotification();
    };
    EXPECT_TRUE(s.Submit(std::move(job)).ok());
    started->WaitForNotification();
    return release;
  }

  static ModelRuntime* runtime_;
};

ModelRuntime* CompressorServiceTest::runtime_ = nullptr;

// A request that names no method gets focus, whose ratio applies to the documents, the prefix kept on top.
TEST_F(CompressorServiceTest, TheDefaultMethodIsFocus) {
  auto h = Start();
  CompressRequest request = FinchRequest();
  request.mutable_spec()->set_method("");
  CompressResponse response;
  grpc::Status s = Compress(*h, request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const kvc::v1::CacheInfo& info = response.info();
  EXPECT_EQ(info.spec().method(), "focus");
  const int64_t prefix = info.prefix_tokens();
  EXPECT_EQ(info.tokens_out(), prefix + KeptTokens(4.0, 0, info.tokens_in() - prefix).value());
}

TEST_F(CompressorServiceTest, CompressStoresTheLibraryResultAndRepeatsAreHits) {
  auto h = Start();
  const CompressRequest request = FinchRequest();
  CompressResponse first;
  grpc::Status s = Compress(*h, request, &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(first.cache_hit());
  ASSERT_EQ(first.cache_id().size(), 64u);

  // The id is the documented hash of the context, spec, storage choice and suffix.
  int64_t prefix = 0;
  const std::vector<int64_t> context = Context({kDocA, kDocB}, &prefix);
  const std::vector<int64_t> suffix = Encode(runtime_->EncodeSuffix(kQuery));
  CacheIdInput id_input;
  id_input.fingerprint = runtime_->fingerprint();
  id_input.method = "finch";
  id_input.ratio = 4.0;
  id_input.options = {{"chunk_tokens", "32"}};
  id_input.protected_prefix = prefix;
  id_input.context = context;
  id_input.query = suffix;
  absl::StatusOr<std::string> expected_id = ComputeCacheId(id_input);
  ASSERT_TRUE(expected_id.ok());
  EXPECT_EQ(first.cache_id(), *expected_id);

  const kvc::v1::CacheInfo& info = first.info();
  EXPECT_EQ(info.cache_id(), first.cache_id());
  EXPECT_EQ(info.model(), "tiny-chat");
  EXPECT_EQ(info.model_fingerprint(), runtime_->fingerprint());
  EXPECT_EQ(info.spec().method(), "finch");
  EXPECT_DOUBLE_EQ(info.spec().ratio(), 4.0);
  EXPECT_EQ(info.spec().options().at("chunk_tokens"), "32");
  EXPECT_EQ(info.tokens_in(), static_cast<int64_t>(context.size()));
  EXPECT_EQ(info.tokens_out(), std::max<int64_t>(static_cast<int64_t>(context.size()) / 4, prefix));
  EXPECT_EQ(info.prefix_tokens(), prefix);
  EXPECT_EQ(info.layers(), 2);
  EXPECT_EQ(info.kv_heads(), 2);
  EXPECT_EQ(info.head_dim(), 16);
  EXPECT_EQ(info.dtype(), kvc::v1::CACHE_DTYPE_F32);
  EXPECT_EQ(info.codec(), kvc::v1::CACHE_CODEC_NONE);
  EXPECT_EQ(info.format_version(), "1.0");
  absl::StatusOr<CacheEntryInfo> entry = h->store->Stat(first.cache_id());
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(info.bytes(), entry->size_bytes);
  const kvc::v1::Timings& t = info.timings();
  EXPECT_GT(t.tokenize_seconds(), 0);
  EXPECT_GT(t.prefill_seconds(), 0);
  EXPECT_GT(t.serialize_seconds(), 0);
  EXPECT_GT(t.store_seconds(), 0);
  EXPECT_GE(t.total_seconds(), t.tokenize_seconds() + t.prefill_seconds() + t.serialize_seconds());

  // The same cache as the library makes from the documented context and suffix.
  CompressionSpec spec;
  spec.method = "finch";
  spec.ratio = 4.0;
  spec.options = {{"chunk_tokens", "32"}};
  absl::StatusOr<std::unique_ptr<CompressionMethod>> method = CreateCompressionMethod(spec);
  ASSERT_TRUE(method.ok());
  CompressionInput in;
  in.model = &runtime_->model();
  in.context = context;
  in.protected_prefix = prefix;
  in.suffix = suffix;
  absl::StatusOr<CompressionResult> direct = (*method)->Compress(in);
  ASSERT_TRUE(direct.ok()) << direct.status();
  DecodedKvCache stored = Stored(*h, first.cache_id());
  EXPECT_EQ(stored.header.metadata["prefix_tokens"], prefix);
  EXPECT_EQ(stored.header.metadata["spec"]["dtype"], "f32");
  ASSERT_EQ(stored.cache.length(), direct->cache.length());
  EXPECT_EQ(stored.cache.next_position(), direct->cache.next_position());
  EXPECT_EQ(info.next_position(), direct->cache.next_position());
  for (int64_t l = 0; l < stored.cache.num_layers(); ++l) {
    EXPECT_TRUE(torch::equal(stored.cache.Positions(l), direct->cache.Positions(l))) << "layer " << l;
    EXPECT_TRUE(torch::equal(stored.cache.Keys(l), direct->cache.Keys(l))) << "layer " << l;
  }

  // The repeat is answered from the store: same id and description, no model work.
  CompressResponse second;
  s = Compress(*h, request, &second);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(second.cache_hit());
  EXPECT_EQ(second.cache_id(), first.cache_id());
  kvc::v1::CacheInfo a = first.info(), b = second.info();
  a.clear_timings();
  b.clear_timings();
  EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString());
  EXPECT_EQ(second.info().timings().prefill_seconds(), 0);
  EXPECT_EQ(second.info().timings().tokenize_seconds(), 0);
  EXPECT_EQ(second.info().timings().serialize_seconds(), 0);
  EXPECT_GT(second.info().timings().total_seconds(), 0);
  EXPECT_EQ(StoredCount(*h), 1);

  const std::string metrics = Scrape(*h->registry);
  EXPECT_THAT(metrics, HasSubstr("kvc_cache_hits_total 1"));
  EXPECT_THAT(metrics, HasSubstr("kvc_cache_misses_total 1"));
  EXPECT_THAT(metrics, HasSubstr(absl::StrCat("kvc_prefill_tokens_total ", context.size())));
  EXPECT_THAT(metrics, HasSubstr("kvc_store_bytes{op=\"put\"}"));
  EXPECT_THAT(metrics, HasSubstr(absl::StrCat("kvc_device_memory_bytes ", runtime_->device_memory_bytes())));
}

TEST_F(CompressorServiceTest, QueryOnlyEntersTheIdOfQueryAwareMethods) {
  auto h = Start();
  CompressRequest r = FinchRequest();
  CompressResponse a, b;
  ASSERT_TRUE(Compress(*h, r, &a).ok());
  r.set_query("Where does the river flow?");
  ASSERT_TRUE(Compress(*h, r, &b).ok());
  EXPECT_NE(a.cache_id(), b.cache_id());
  EXPECT_FALSE(b.cache_hit());

  *r.mutable_spec() = Spec("knorm", 2.0);
  ASSERT_TRUE(Compress(*h, r, &a).ok());
  r.set_query("Something else entirely?");
  ASSERT_TRUE(Compress(*h, r, &b).ok());
  EXPECT_EQ(a.cache_id(), b.cache_id());
  EXPECT_TRUE(b.cache_hit());
  r.clear_query();  // query-agnostic methods need none
  ASSERT_TRUE(Compress(*h, r, &b).ok());
  EXPECT_EQ(a.cache_id(), b.cache_id());

  // The storage choice and the system prompt are part of the id; a document label is not.
  r.set_cache_dtype(kvc::v1::CACHE_DTYPE_BF16);
  r.set_cache_codec(kvc::v1::CACHE_CODEC_ZSTD);
  ASSERT_TRUE(Compress(*h, r, &b).ok());
  EXPECT_NE(a.cache_id(), b.cache_id());
  EXPECT_EQ(b.info().dtype(), kvc::v1::CACHE_DTYPE_BF16);
  EXPECT_EQ(b.info().codec(), kvc::v1::CACHE_CODEC_ZSTD);
  r.set_system_prompt("");
  CompressResponse c;
  ASSERT_TRUE(Compress(*h, r, &c).ok());
  EXPECT_NE(c.cache_id(), b.cache_id());
  EXPECT_LT(c.info().prefix_tokens(), b.info().prefix_tokens());
  r.mutable_documents(0)->set_id("doc-a");
  CompressResponse d;
  ASSERT_TRUE(Compress(*h, r, &d).ok());
  EXPECT_EQ(d.cache_id(), c.cache_id());
  EXPECT_TRUE(d.cache_hit());
}

TEST_F(CompressorServiceTest, TokenIdDocumentsAndSuffixIdsAreUsedAsGiven) {
  auto h = Start();
  CompressResponse from_text, from_ids;
  CompressRequest r = FinchRequest();
  ASSERT_TRUE(Compress(*h, r, &from_text).ok());
  // The same documents and suffix as ids: the same context, hence the same id.
  CompressRequest ids = r;
  for (int i = 0; i < 2; ++i) {
    std::vector<int64_t> tokens = Encode(runtime_->EncodeDocument(r.documents(i).text()));
    kvc::v1::Document* d = ids.mutable_documents(i);
    d->clear_text();
    for (int64_t t : tokens) d->mutable_token_ids()->add_ids(static_cast<int32_t>(t));
  }
  for (int64_t t : Encode(runtime_->EncodeSuffix(kQuery))) ids.mutable_suffix_ids()->add_ids(static_cast<int32_t>(t));
  ASSERT_TRUE(Compress(*h, ids, &from_ids).ok());
  EXPECT_EQ(from_ids.cache_id(), from_text.cache_id());
  EXPECT_TRUE(from_ids.cache_hit());
}

TEST_F(CompressorServiceTest, PrecomputeFullThenCompressFromTheStoredKv) {
  auto h = Start();
  PrecomputeRequest pre;
  *pre.add_documents() = TextDoc(kDocA, "a");
  *pre.add_documents() = TextDoc(kDocB);
  pre.set_mode(kvc::v1::PRECOMPUTE_MODE_FULL);
  PrecomputeResponse full;
  grpc::Status s = Precompute(*h, pre, &full);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(full.results_size(), 2);
  int64_t prefix = 0;
  const std::vector<int64_t> ctx_a = Context({kDocA}, &prefix);
  const std::vector<int64_t> ctx_b = Context({kDocB}, &prefix);
  EXPECT_EQ(full.results(0).document_id(), "a");
  EXPECT_FALSE(full.results(1).has_document_id());
  for (int i = 0; i < 2; ++i) {
    const kvc::v1::PrecomputeResult& res = full.results(i);
    EXPECT_FALSE(res.cache_hit());
    EXPECT_EQ(res.info().spec().method(), "none");
    EXPECT_EQ(res.info().tokens_in(), static_cast<int64_t>((i == 0 ? ctx_a : ctx_b).size()));
    EXPECT_EQ(res.info().tokens_out(), res.info().tokens_in());
    EXPECT_EQ(res.info().prefix_tokens(), prefix);
    EXPECT_GT(res.info().timings().prefill_seconds(), 0);
    EXPECT_TRUE(h->store->Stat(res.cache_id()).ok());
  }
  EXPECT_NE(full.results(0).cache_id(), full.results(1).cache_id());

  // Documented: a full precompute of one document and a Compress with method none of it share the id.
  CompressRequest none;
  *none.add_documents() = TextDoc(kDocA);
  none.mutable_spec()->set_method("none");
  CompressResponse none_response;
  ASSERT_TRUE(Compress(*h, none, &none_response).ok());
  EXPECT_TRUE(none_response.cache_hit());
  EXPECT_EQ(none_response.cache_id(), full.results(0).cache_id());

  // A re-run is all hits.
  PrecomputeResponse again;
  ASSERT_TRUE(Precompute(*h, pre, &again).ok());
  ASSERT_EQ(again.results_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(again.results(i).cache_hit());
    EXPECT_EQ(again.results(i).cache_id(), full.results(i).cache_id());
  }

  // Compress from the stored KV: the composed context keeps the first prefix only.
  const int64_t composed = static_cast<int64_t>(ctx_a.size() + ctx_b.size()) - prefix;
  const int64_t target = prefix + 20;
  CompressRequest from_ids;
  from_ids.add_document_cache_ids(full.results(0).cache_id());
  from_ids.add_document_cache_ids(full.results(1).cache_id());
  from_ids.set_query(kQuery);
  from_ids.mutable_spec()->set_method("finch");
  from_ids.mutable_spec()->set_target_tokens(target);
  CompressResponse selected;
  s = Compress(*h, from_ids, &selected);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(selected.cache_hit());
  EXPECT_EQ(selected.info().tokens_in(), composed);
  EXPECT_EQ(selected.info().tokens_out(), target);
  EXPECT_EQ(selected.info().prefix_tokens(), prefix);
  EXPECT_GT(selected.info().timings().store_seconds(), 0);
  DecodedKvCache stored = Stored(*h, selected.cache_id());
  EXPECT_EQ(stored.cache.length(), target);
  // The protected prefix is kept.
  torch::Tensor kept = stored.cache.Positions(0);
  EXPECT_TRUE(torch::equal(kept.narrow(1, 0, prefix), torch::arange(prefix).expand({kept.size(0), prefix})));

  // The id hashes the referenced ids (source 1), and the repeat is a hit.
  CacheIdInput id_input;
  id_input.fingerprint = runtime_->fingerprint();
  id_input.method = "finch";
  id_input.target_tokens = target;
  id_input.document_cache_ids = {full.results(0).cache_id(), full.results(1).cache_id()};
  id_input.query = Encode(runtime_->EncodeSuffix(kQuery));
  EXPECT_EQ(selected.cache_id(), *ComputeCacheId(id_input));
  CompressResponse repeat;
  ASSERT_TRUE(Compress(*h, from_ids, &repeat).ok());
  EXPECT_TRUE(repeat.cache_hit());
  EXPECT_EQ(repeat.cache_id(), selected.cache_id());
}

TEST_F(CompressorServiceTest, SnapKvFromStoredKvScoresWithTheQuery) {
  // A prefilled context has no queries of its own, so SnapKV's fixed window votes with the query's rows:
  // the query is required and part of the id.
  auto h = Start();
  PrecomputeRequest pre;
  *pre.add_documents() = TextDoc(kDocA);
  *pre.add_documents() = TextDoc(kDocB);
  pre.set_mode(kvc::v1::PRECOMPUTE_MODE_FULL);
  PrecomputeResponse full;
  ASSERT_TRUE(Precompute(*h, pre, &full).ok());
  auto request = [&](const std::string& query) {
    CompressRequest r;
    r.add_document_cache_ids(full.results(0).cache_id());
    r.add_document_cache_ids(full.results(1).cache_id());
    if (!query.empty()) r.set_query(query);
    r.mutable_spec()->set_method("snapkv");
    r.mutable_spec()->set_ratio(2);
    return r;
  };
  CompressResponse first, second, none;
  grpc::Status s = Compress(*h, request(kQuery), &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  s = Compress(*h, request("Which other question is this?"), &second);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(second.cache_hit());
  EXPECT_NE(first.cache_id(), second.cache_id());
  s = Compress(*h, request(""), &none);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("query"));
}

TEST_F(CompressorServiceTest, PrecomputeQueryAgnostic) {
  auto h = Start();
  PrecomputeRequest pre;
  *pre.add_documents() = TextDoc(kDocA, "first");
  *pre.add_documents() = TextDoc(kDocB, "second");
  pre.set_mode(kvc::v1::PRECOMPUTE_MODE_QUERY_AGNOSTIC);
  *pre.mutable_spec() = Spec("knorm", 2.0);
  pre.set_cache_codec(kvc::v1::CACHE_CODEC_ZSTD);
  PrecomputeResponse response;
  grpc::Status s = Precompute(*h, pre, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.results_size(), 2);
  int64_t prefix = 0;
  for (int i = 0; i < 2; ++i) {
    const kvc::v1::PrecomputeResult& r = response.results(i);
    const std::vector<int64_t> ctx = Context({i == 0 ? kDocA : kDocB}, &prefix);
    EXPECT_EQ(r.document_id(), i == 0 ? "first" : "second");
    EXPECT_FALSE(r.cache_hit());
    EXPECT_EQ(r.info().spec().method(), "knorm");
    EXPECT_EQ(r.info().codec(), kvc::v1::CACHE_CODEC_ZSTD);
    EXPECT_EQ(r.info().tokens_in(), static_cast<int64_t>(ctx.size()));
    EXPECT_EQ(r.info().tokens_out(), std::max<int64_t>(static_cast<int64_t>(ctx.size()) / 2, prefix));
    EXPECT_GT(r.info().timings().total_seconds(), 0);
  }
  // Part of the work already done: the stored document is a hit, the new one is made.
  PrecomputeRequest more = pre;
  *more.add_documents() = TextDoc(LongDocument(1), "third");
  PrecomputeResponse again;
  ASSERT_TRUE(Precompute(*h, more, &again).ok());
  ASSERT_EQ(again.results_size(), 3);
  EXPECT_TRUE(again.results(0).cache_hit());
  EXPECT_TRUE(again.results(1).cache_hit());
  EXPECT_FALSE(again.results(2).cache_hit());
  EXPECT_EQ(again.results(2).document_id(), "third");
  EXPECT_EQ(again.results(0).cache_id(), response.results(0).cache_id());
  EXPECT_EQ(StoredCount(*h), 3);

  // snapkv with its fixed window is query-agnostic too.
  pre.clear_cache_codec();
  *pre.mutable_spec() = Spec("snapkv", 2.0, {{"window", "8"}});
  ASSERT_TRUE(Precompute(*h, pre, &response).ok());
}

TEST_F(CompressorServiceTest, GetModelInfoDescribesModelMethodsAndLimits) {
  CompressorServiceOptions options;
  options.limits.max_context_tokens = 5000;
  options.limits.max_query_tokens = 300;
  options.limits.max_documents = 7;
  options.limits.max_message_bytes = 1 << 22;
  SchedulerOptions so;
  so.max_queue_tokens = 12345;
  auto h = Start(options, so);
  grpc::ClientContext ctx;
  kvc::v1::ModelInfo info;
  grpc::Status s = h->stub->GetModelInfo(&ctx, kvc::v1::GetModelInfoRequest(), &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const ModelConfig& c = runtime_->model().config();
  EXPECT_EQ(info.name(), "tiny-chat");
  EXPECT_EQ(info.fingerprint(), runtime_->fingerprint());
  EXPECT_EQ(info.architecture(), "llama");
  EXPECT_EQ(info.num_layers(), 2);
  EXPECT_EQ(info.num_heads(), 4);
  EXPECT_EQ(info.num_kv_heads(), 2);
  EXPECT_EQ(info.head_dim(), 16);
  EXPECT_EQ(info.vocab_size(), c.vocab_size);
  EXPECT_EQ(info.max_position_embeddings(), 4096);
  EXPECT_EQ(info.device(), "cpu");
  EXPECT_EQ(info.dtype(), "f32");
  EXPECT_EQ(info.chat_format(), "chatml");
  EXPECT_EQ(info.bos_token_id(), 1);
  EXPECT_THAT(info.eos_token_ids(), ::testing::ElementsAre(2));
  EXPECT_EQ(info.format_version(), "1.0");
  EXPECT_EQ(info.limits().max_context_tokens(), 5000);
  EXPECT_EQ(info.limits().max_query_tokens(), 300);
  EXPECT_EQ(info.limits().max_documents(), 7);
  EXPECT_EQ(info.limits().max_message_bytes(), 1 << 22);
  EXPECT_EQ(info.limits().max_queue_tokens(), 12345);

  std::vector<std::string> names;
  for (const kvc::v1::MethodInfo& m : info.methods()) names.push_back(m.name());
  EXPECT_THAT(names, ::testing::ElementsAre("finch", "focus", "knorm", "none", "novelty", "random", "recall",
                                            "snapkv", "streaming_llm", "truncate"));
  std::map<std::string, kvc::v1::MethodInfo> by_name;
  for (const kvc::v1::MethodInfo& m : info.methods()) by_name[m.name()] = m;
  EXPECT_TRUE(by_name["finch"].query_aware());
  EXPECT_FALSE(by_name["snapkv"].query_aware());
  EXPECT_FALSE(by_name["knorm"].query_aware());
  std::map<std::string, std::string> finch;
  for (const kvc::v1::MethodOption& o : by_name["finch"].options()) finch[o.name()] = o.default_value();
  EXPECT_EQ(finch, (std::map<std::string, std::string>{{"chunk_tokens", "2048"}, {"granularity", "kv_head"},
                                                       {"keep_query", "false"}, {"normalize", "true"},
                                                       {"rerotate", "true"}}));

  // Every listed option, at its listed default, is accepted by the method and changes nothing about
  // whether it is query-aware; a name that is not listed is refused.
  for (const kvc::v1::MethodInfo& m : info.methods()) {
    CompressionSpec spec;
    spec.method = m.name();
    spec.ratio = m.name() == "none" ? 0 : 2;
    for (const kvc::v1::MethodOption& o : m.options()) {
      EXPECT_FALSE(o.description().empty()) << m.name() << "." << o.name();
      spec.options[o.name()] = o.default_value();
    }
    absl::StatusOr<std::unique_ptr<CompressionMethod>> made = CreateCompressionMethod(spec);
    ASSERT_TRUE(made.ok()) << m.name() << ": " << made.status();
    EXPECT_EQ((*made)->query_aware(), m.query_aware()) << m.name();
    spec.options["not_an_option"] = "1";
    EXPECT_EQ(CreateCompressionMethod(spec).status().code(), absl::StatusCode::kInvalidArgument) << m.name();
  }
}

struct BadCase {
  std::string name;
  std::function<void(CompressRequest&)> edit;
  grpc::StatusCode code;
  std::string message;  // a part of the error message (usually the field)
};

TEST_F(CompressorServiceTest, BadCompressRequestsGetTheirCodes) {
  CompressorServiceOptions options;
  options.limits.max_context_tokens = 400;
  options.limits.max_query_tokens = 40;
  options.limits.max_documents = 3;
  auto h = Start(options);
  // A stored cache that is not a full one, to reference.
  PrecomputeRequest pre;
  *pre.add_documents() = TextDoc(kDocA);
  pre.set_mode(kvc::v1::PRECOMPUTE_MODE_QUERY_AGNOSTIC);
  *pre.mutable_spec() = Spec("knorm", 2.0);
  PrecomputeResponse knorm;
  ASSERT_TRUE(Precompute(*h, pre, &knorm).ok());
  const std::string knorm_id = knorm.results(0).cache_id();
  const int32_t vocab = static_cast<int32_t>(runtime_->model().config().vocab_size);

  using C = grpc::StatusCode;
  const std::vector<BadCase> cases = {
      {"no documents", [](CompressRequest& r) { r.clear_documents(); }, C::INVALID_ARGUMENT, "documents: empty"},
      {"documents and cache ids",
       [](CompressRequest& r) { r.add_document_cache_ids(std::string(64, 'a')); }, C::INVALID_ARGUMENT,
       "document_cache_ids"},
      {"too many documents",
       [](CompressRequest& r) {
         for (int i = 0; i < 3; ++i) *r.add_documents() = TextDoc("more");
       },
       C::INVALID_ARGUMENT, "max_documents"},
      {"document without content", [](CompressRequest& r) { r.add_documents(); }, C::INVALID_ARGUMENT,
       "documents[2]: no content"},
      {"empty text", [](CompressRequest& r) { r.mutable_documents(1)->set_text(""); }, C::INVALID_ARGUMENT,
       "documents[1].text: empty"},
      {"empty token ids", [](CompressRequest& r) { r.mutable_documents(1)->mutable_token_ids(); },
       C::INVALID_ARGUMENT, "documents[1].token_ids: empty"},
      {"label too long", [](CompressRequest& r) { r.mutable_documents(0)->set_id(std::string(257, 'x')); },
       C::INVALID_ARGUMENT, "documents[0].id"},
      {"token id past the vocabulary",
       [vocab](CompressRequest& r) {
         r.mutable_documents(0)->mutable_token_ids()->add_ids(3);
         kvc::v1::TokenIds* ids = r.mutable_documents(1)->mutable_token_ids();
         for (int i = 0; i < 5; ++i) ids->add_ids(10);
         ids->add_ids(vocab);
       },
       C::INVALID_ARGUMENT, "documents[1].token_ids[5]"},
      {"negative token id", [](CompressRequest& r) { r.mutable_documents(0)->mutable_token_ids()->add_ids(-1); },
       C::INVALID_ARGUMENT, "documents[0].token_ids[0]"},
      {"suffix id past the vocabulary",
       [vocab](CompressRequest& r) {
         r.mutable_suffix_ids()->add_ids(5);
         r.mutable_suffix_ids()->add_ids(vocab + 7);
       },
       C::INVALID_ARGUMENT, "suffix_ids[1]"},
      {"empty query for finch", [](CompressRequest& r) { r.set_query(""); }, C::INVALID_ARGUMENT, "query: empty"},
      {"no question for finch", [](CompressRequest& r) { r.clear_question(); }, C::INVALID_ARGUMENT,
       "query: empty"},
      {"empty suffix ids for finch", [](CompressRequest& r) { r.mutable_suffix_ids(); }, C::INVALID_ARGUMENT,
       "query: empty"},
      {"no query for snapkv window=query",
       [](CompressRequest& r) {
         *r.mutable_spec() = Spec("snapkv", 2.0, {{"window", "query"}});
         r.clear_question();
       },
       C::INVALID_ARGUMENT, "query: empty"},
      {"query over the limit", [](CompressRequest& r) { r.set_query(LongDocument(1)); }, C::OUT_OF_RANGE,
       "query:"},
      {"suffix ids over the limit",
       [](CompressRequest& r) {
         for (int i = 0; i < 41; ++i) r.mutable_suffix_ids()->add_ids(5);
       },
       C::OUT_OF_RANGE, "suffix_ids"},
      {"context over the limit", [](CompressRequest& r) { *r.add_documents() = TextDoc(LongDocument(8)); },
       C::OUT_OF_RANGE, "max_context_tokens"},
      {"system prompt over its limit",
       [](CompressRequest& r) {
         std::string system;
         for (int i = 0; i < 3000; ++i) system += "the report ";
         r.set_system_prompt(system);
       },
       C::OUT_OF_RANGE, "system_prompt"},
      {"ratio below 1", [](CompressRequest& r) { r.mutable_spec()->set_ratio(0.5); }, C::OUT_OF_RANGE,
       "spec.ratio"},
      {"ratio 0", [](CompressRequest& r) { r.mutable_spec()->set_ratio(0); }, C::OUT_OF_RANGE, "spec.ratio"},
      {"ratio NaN", [](CompressRequest& r) { r.mutable_spec()->set_ratio(std::nan("")); }, C::OUT_OF_RANGE,
       "spec.ratio"},
      {"ratio infinite",
       [](CompressRequest& r) { r.mutable_spec()->set_ratio(std::numeric_limits<double>::infinity()); },
       C::OUT_OF_RANGE, "spec.ratio"},
      {"target_tokens 0", [](CompressRequest& r) { r.mutable_spec()->set_target_tokens(0); }, C::OUT_OF_RANGE,
       "spec.target_tokens"},
      {"target_tokens past the context", [](CompressRequest& r) { r.mutable_spec()->set_target_tokens(100000); },
       C::OUT_OF_RANGE, "spec.target_tokens"},
      {"no budget", [](CompressRequest& r) { r.mutable_spec()->clear_budget(); }, C::INVALID_ARGUMENT, "spec"},
      {"unset spec", [](CompressRequest& r) { r.clear_spec(); }, C::INVALID_ARGUMENT, "budget"},
      {"unknown method", [](CompressRequest& r) { r.mutable_spec()->set_method("h2o"); }, C::INVALID_ARGUMENT,
       "spec.method"},
      {"method names are case-sensitive", [](CompressRequest& r) { r.mutable_spec()->set_method("Finch"); },
       C::INVALID_ARGUMENT, "spec.method"},
      {"unknown option", [](CompressRequest& r) { (*r.mutable_spec()->mutable_options())["window"] = "8"; },
       C::INVALID_ARGUMENT, "spec.options.window"},
      {"unparsable option",
       [](CompressRequest& r) { (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "many"; },
       C::INVALID_ARGUMENT, "spec.options.chunk_tokens"},
      {"option out of range", [](CompressRequest& r) { (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "0"; },
       C::OUT_OF_RANGE, "spec.options.chunk_tokens"},
      {"chunk past the model window",
       [](CompressRequest& r) { (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "100000"; },
       C::OUT_OF_RANGE, "spec.options.chunk_tokens"},
      {"bad choice", [](CompressRequest& r) { (*r.mutable_spec()->mutable_options())["granularity"] = "token"; },
       C::INVALID_ARGUMENT, "spec.options.granularity"},
      {"unknown cache dtype", [](CompressRequest& r) { r.set_cache_dtype(static_cast<kvc::v1::CacheDtype>(9)); },
       C::INVALID_ARGUMENT, "cache_dtype"},
      {"unknown cache codec", [](CompressRequest& r) { r.set_cache_codec(static_cast<kvc::v1::CacheCodec>(9)); },
       C::INVALID_ARGUMENT, "cache_codec"},
      {"another model by name", [](CompressRequest& r) { r.set_model("SmolLM2-135M-Instruct"); },
       C::FAILED_PRECONDITION, "model"},
      {"another model by fingerprint", [](CompressRequest& r) { r.set_model(std::string(64, 'e')); },
       C::FAILED_PRECONDITION, "model"},
      {"malformed document cache id",
       [](CompressRequest& r) {
         r.clear_documents();
         r.add_document_cache_ids(std::string(64, 'a'));
         r.add_document_cache_ids("../etc/passwd");
       },
       C::INVALID_ARGUMENT, "document_cache_ids[1]"},
      {"uppercase document cache id",
       [](CompressRequest& r) {
         r.clear_documents();
         r.add_document_cache_ids(std::string(64, 'A'));
       },
       C::INVALID_ARGUMENT, "document_cache_ids[0]"},
      {"unknown document cache id",
       [](CompressRequest& r) {
         r.clear_documents();
         r.add_document_cache_ids(std::string(64, 'a'));
       },
       C::NOT_FOUND, "document_cache_ids[0]"},
      {"document cache that is not full",
       [knorm_id](CompressRequest& r) {
         r.clear_documents();
         r.add_document_cache_ids(knorm_id);
       },
       C::FAILED_PRECONDITION, "document_cache_ids[0]"},
      {"too many document cache ids",
       [knorm_id](CompressRequest& r) {
         r.clear_documents();
         for (int i = 0; i < 4; ++i) r.add_document_cache_ids(knorm_id);
       },
       C::INVALID_ARGUMENT, "max_documents"},
  };
  const int64_t stored_before = StoredCount(*h);
  for (const BadCase& c : cases) {
    CompressRequest r = FinchRequest();
    c.edit(r);
    CompressResponse response;
    grpc::Status s = Compress(*h, r, &response);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.name;
  }
  EXPECT_EQ(StoredCount(*h), stored_before);
  EXPECT_GE(cases.size(), 40u);

  // The server still answers a good request.
  CompressResponse ok;
  grpc::Status s = Compress(*h, FinchRequest(), &ok);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(CompressorServiceTest, BadPrecomputeRequestsGetTheirCodes) {
  CompressorServiceOptions options;
  options.limits.max_context_tokens = 400;
  options.limits.max_documents = 2;
  auto h = Start(options);
  auto base = [] {
    PrecomputeRequest r;
    *r.add_documents() = TextDoc(kDocA);
    r.set_mode(kvc::v1::PRECOMPUTE_MODE_QUERY_AGNOSTIC);
    *r.mutable_spec() = Spec("knorm", 2.0);
    return r;
  };
  using C = grpc::StatusCode;
  const std::vector<std::tuple<std::string, std::function<void(PrecomputeRequest&)>, C, std::string>> cases = {
      {"no mode", [](PrecomputeRequest& r) { r.clear_mode(); }, C::INVALID_ARGUMENT, "mode: required"},
      {"unknown mode", [](PrecomputeRequest& r) { r.set_mode(static_cast<kvc::v1::PrecomputeMode>(7)); },
       C::INVALID_ARGUMENT, "mode"},
      {"no documents", [](PrecomputeRequest& r) { r.clear_documents(); }, C::INVALID_ARGUMENT, "documents"},
      {"too many documents",
       [](PrecomputeRequest& r) {
         *r.add_documents() = TextDoc(kDocB);
         *r.add_documents() = TextDoc(kDocB);
       },
       C::INVALID_ARGUMENT, "max_documents"},
      {"finch is query-aware", [](PrecomputeRequest& r) { *r.mutable_spec() = Spec("finch", 2.0); },
       C::INVALID_ARGUMENT, "spec.method"},
      {"unset spec means finch", [](PrecomputeRequest& r) { r.clear_spec(); }, C::INVALID_ARGUMENT, "spec"},
      {"snapkv window=query",
       [](PrecomputeRequest& r) { *r.mutable_spec() = Spec("snapkv", 2.0, {{"window", "query"}}); },
       C::INVALID_ARGUMENT, "spec.method"},
      {"no budget", [](PrecomputeRequest& r) { r.mutable_spec()->clear_budget(); }, C::INVALID_ARGUMENT, "spec"},
      {"full with a method",
       [](PrecomputeRequest& r) {
         r.set_mode(kvc::v1::PRECOMPUTE_MODE_FULL);
         *r.mutable_spec() = Spec("knorm", 2.0);
       },
       C::INVALID_ARGUMENT, "spec.method"},
      {"document over the limit (the second; nothing is made)",
       [](PrecomputeRequest& r) { *r.add_documents() = TextDoc(LongDocument(8)); }, C::OUT_OF_RANGE,
       "documents[1]"},
      {"empty document", [](PrecomputeRequest& r) { r.mutable_documents(0)->set_text(""); }, C::INVALID_ARGUMENT,
       "documents[0].text"},
      {"another model", [](PrecomputeRequest& r) { r.set_model("other"); }, C::FAILED_PRECONDITION, "model"},
  };
  for (const auto& [name, edit, code, message] : cases) {
    PrecomputeRequest r = base();
    edit(r);
    PrecomputeResponse response;
    grpc::Status s = Precompute(*h, r, &response);
    EXPECT_EQ(s.error_code(), code) << name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(message)) << name;
  }
  EXPECT_EQ(StoredCount(*h), 0);
  // FULL with an empty spec message or an explicit "none" is fine.
  PrecomputeRequest full = base();
  full.set_mode(kvc::v1::PRECOMPUTE_MODE_FULL);
  full.mutable_spec()->Clear();
  PrecomputeResponse a, b;
  ASSERT_TRUE(Precompute(*h, full, &a).ok());
  full.mutable_spec()->set_method("none");
  ASSERT_TRUE(Precompute(*h, full, &b).ok());
  EXPECT_EQ(a.results(0).cache_id(), b.results(0).cache_id());
  EXPECT_TRUE(b.results(0).cache_hit());
}

TEST_F(CompressorServiceTest, FullQueueIsResourceExhausted) {
  SchedulerOptions so;
  so.max_queue_tokens = 200;
  auto h = Start({}, so);
  // Larger than the whole queue: never admitted.
  CompressRequest big = FinchRequest();
  *big.add_documents() = TextDoc(LongDocument(4));
  CompressResponse response;
  grpc::Status s = Compress(*h, big, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  // A busy worker and a queue already holding 150 of its 200 tokens.
  std::shared_ptr<absl::Notification> release = BlockWorker(*h->scheduler);
  Job filler;
  filler.cost_tokens = 150;
  filler.run = [](const JobStart&) {};
  ASSERT_TRUE(h->scheduler->Submit(std::move(filler)).ok());
  s = Compress(*h, FinchRequest(), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("queue is full"));
  release->Notify();
  WaitIdle(*h->scheduler);
  s = Compress(*h, FinchRequest(), &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(CompressorServiceTest, DeadlinesAreHonoured) {
  auto h = StartWithPausePoints();
  ASSERT_NE(h, nullptr);
  const PauseControl& pause = h->pause_dir->control();
  CompressResponse response;
  // Already expired when sent.
  grpc::Status s = Compress(*h, FinchRequest(), &response, absl::Milliseconds(-10));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);

  // Expires while the request waits in the queue: the job is never run and nothing is stored. The call is
  // held once queued until the server has seen its deadline pass, and only then is the device free.
  std::shared_ptr<absl::Notification> release = BlockWorker(*h->scheduler);
  // The deadline leaves far more than the few milliseconds a small request needs to be queued.
  ASSERT_TRUE(pause.Arm(pause_point::kCompressQueued).ok());
  s = Compress(*h, FinchRequest(), &response, absl::Seconds(2));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  const absl::Status queued = pause.WaitHeld(pause_point::kCompressQueued, absl::Now() + absl::Seconds(60));
  EXPECT_TRUE(queued.ok()) << queued;
  if (queued.ok()) {
    const absl::Status seen = pause.WaitStopSeen(pause_point::kCompressQueued, absl::Now() + absl::Seconds(60));
    EXPECT_TRUE(seen.ok()) << seen;
    EXPECT_TRUE(pause.Release(pause_point::kCompressQueued).ok());
  }
  release->Notify();
  WaitIdle(*h->scheduler);
  EXPECT_EQ(StoredCount(*h), 0);
}

// A finch run over a long document in tiny chunks, so that it takes long enough to interrupt.
CompressRequest SlowRequest(const std::string& query, int repeats) {
  CompressRequest r;
  *r.add_documents() = TextDoc(LongDocument(repeats));
  r.set_query(query);
  *r.mutable_spec() = Spec("finch", 8.0, {{"chunk_tokens", "4"}});
  return r;
}

// How many prefill chunks start from now until the scheduler is idle.
int ChunksUntilIdle(const PauseControl& pause, Scheduler& scheduler) {
  return pause.CountArrivals(pause_point::kCompressPrefillChunk, absl::Now() + absl::Seconds(60), [&scheduler] {
    const SchedulerStats st = scheduler.stats();
    return st.running_jobs == 0 && st.queued_jobs == 0;
  });
}

// The work is held at the fifth prefill chunk of a run of hundreds, then cancelled or its deadline passes;
// once the held chunk has seen the stop the work goes on: the call ends with that code, no other chunk
// starts, and nothing is stored.
TEST_F(CompressorServiceTest, CancelAndDeadlineStopCompressionAtTheNextChunk) {
  auto h = StartWithPausePoints();
  ASSERT_NE(h, nullptr);
  const PauseControl& pause = h->pause_dir->control();
  const CompressRequest cancelled = SlowRequest("Where does the river flow?", 16);
  const int64_t chunks = (Encode(runtime_->EncodeDocument(LongDocument(16))).size() + 3) / 4;
  ASSERT_GT(chunks, 200);
  const int64_t stored = StoredCount(*h);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    CompressResponse response;
    absl::Notification done;
    grpc::Status status;
    ASSERT_TRUE(pause.Arm(pause_point::kCompressPrefillChunk).ok());  // before the call: chunks count from 1
    h->stub->async()->Compress(&ctx, &cancelled, &response, [&](grpc::Status st) {
      status = st;
      done.Notify();
    });
    absl::Status held =
        pause.HoldAtArmed(pause_point::kCompressPrefillChunk, 5, absl::Now() + absl::Seconds(60));
    EXPECT_TRUE(held.ok()) << held;
    ctx.TryCancel();
    if (held.ok()) {
      absl::Status seen = pause.WaitStopSeen(pause_point::kCompressPrefillChunk, absl::Now() + absl::Seconds(60));
      EXPECT_TRUE(seen.ok()) << seen;
      EXPECT_TRUE(pause.Release(pause_point::kCompressPrefillChunk).ok());
    }
    const int after = ChunksUntilIdle(pause, *h->scheduler);
    done.WaitForNotification();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
    EXPECT_EQ(after, 0) << "of the " << chunks - 5 << " remaining chunks";
  }
  // The deadline must leave the call time to reach the fifth chunk; it grows when it did not (a slow or busy
  // machine).
  for (absl::Duration timeout : {absl::Seconds(2), absl::Seconds(8), absl::Seconds(32), absl::Seconds(120)}) {
    grpc::ClientContext ctx;
    const absl::Time deadline = absl::Now() + timeout;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    const CompressRequest request = SlowRequest("What starts on Monday?", 16);
    CompressResponse response;
    absl::Notification done;
    grpc::Status status;
    ASSERT_TRUE(pause.Arm(pause_point::kCompressPrefillChunk).ok());
    h->stub->async()->Compress(&ctx, &request, &response, [&](grpc::Status st) {
      status = st;
      done.Notify();
    });
    absl::Status held = pause.HoldAtArmed(pause_point::kCompressPrefillChunk, 5, deadline,
                                          [&done] { return done.HasBeenNotified(); });
    const bool in_time = held.ok() && absl::Now() < deadline;
    if (held.ok()) {
      absl::Status seen = pause.WaitStopSeen(pause_point::kCompressPrefillChunk, deadline + absl::Seconds(60));
      EXPECT_TRUE(seen.ok()) << seen;
      EXPECT_TRUE(pause.Release(pause_point::kCompressPrefillChunk).ok());
    }
    pause.Disarm(pause_point::kCompressPrefillChunk);
    const int after = ChunksUntilIdle(pause, *h->scheduler);
    done.WaitForNotification();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
    if (!in_time) continue;
    EXPECT_EQ(after, 0);
    break;
  }
  EXPECT_EQ(StoredCount(*h), stored);
}

}  // namespace
}  // namespace kvc
