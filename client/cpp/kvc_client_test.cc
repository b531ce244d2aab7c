// KvcClient against an in-process server: the real cache role over a memory store, fake compress and
// generate roles, gRPC's health service, and the real bearer-token check.
#include "client/cpp/kvc_client.h"

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cpp/kvc_file_info.h"
#include "client/cpp/testing/test_certs.h"
#include "client/cpp/testing/test_server.h"
#include "compressor/util/sha256.h"

namespace kvc {
namespace {

using kvc::testing::TestServer;
using kvc::testing::TestServerOptions;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The committed golden .kvc files of the format tests, by name.
std::vector<std::pair<std::string, std::string>> GoldenKvcs() {
  const char* root = std::getenv("KVC_SOURCE_DIR");
  const std::string dir = absl::StrCat(root != nullptr ? root : ".", "/tests/testdata/kvc/");
  std::vector<std::pair<std::string, std::string>> files;
  for (const char* name : {"v1_f32_none.kvc", "v1_bf16_zstd.kvc", "v1_f16_none.kvc", "v1_int8_zstd.kvc"}) {
    files.emplace_back(name, ReadFile(dir + name));
    EXPECT_FALSE(files.back().second.empty()) << dir << name;
  }
  return files;
}

ClientOptions FastRetries(const std::string& target) {
  ClientOptions options;
  options.target = target;
  options.default_deadline = absl::Seconds(30);
  options.retry.max_attempts = 4;
  options.retry.initial_backoff = absl::Milliseconds(10);
  options.retry.max_backoff = absl::Milliseconds(40);
  options.retry.jitter = 0.0;
  return options;
}

kvc::v1::CompressRequest SimpleCompress() {
  kvc::v1::CompressRequest request;
  request.add_documents()->set_text("The company was founded in 1999 by Ada.");
  request.set_query("Who founded it?");
  request.mutable_spec()->set_ratio(4);
  return request;
}

class KvcClientTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer({}); }

  void StartServer(const TestServerOptions& options) {
    server_.reset();
    absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    client_ = MakeClient(FastRetries(server_->target()));
  }

  std::unique_ptr<KvcClient> MakeClient(const ClientOptions& options) {
    absl::StatusOr<std::unique_ptr<KvcClient>> client = KvcClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<KvcClient> client_;
};

// ---- retries ----

TEST_F(KvcClientTest, RetriesUnavailableUntilItSucceeds) {
  server_->compressor().FailNext({grpc::Status(grpc::UNAVAILABLE, "draining"),
                                  grpc::Status(grpc::UNAVAILABLE, "draining")});
  absl::StatusOr<kvc::v1::CompressResponse> response = client_->Compress(SimpleCompress());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->cache_id().size(), 64u);
  EXPECT_EQ(server_->compressor().calls(), 3);
}

TEST_F(KvcClientTest, StopsAfterMaxAttemptsWithTheServersStatus) {
  server_->compressor().FailNext(std::vector<grpc::Status>(6, grpc::Status(grpc::UNAVAILABLE, "store down")));
  ClientOptions options = FastRetries(server_->target());
  options.retry.max_attempts = 3;
  std::unique_ptr<KvcClient> client = MakeClient(options);
  absl::StatusOr<kvc::v1::ModelInfo> info = client->GetModelInfo();
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(info.status().message(), "store down");
  EXPECT_EQ(server_->compressor().calls(), 3);
}

TEST_F(KvcClientTest, OtherCodesAreNeverRetried) {
  const std::vector<grpc::StatusCode> codes = {grpc::INVALID_ARGUMENT, grpc::OUT_OF_RANGE, grpc::NOT_FOUND,
                                               grpc::FAILED_PRECONDITION, grpc::RESOURCE_EXHAUSTED,
                                               grpc::DATA_LOSS, grpc::INTERNAL, grpc::DEADLINE_EXCEEDED};
  int expected_calls = 0;
  for (grpc::StatusCode code : codes) {
    server_->compressor().FailNext({grpc::Status(code, "documents[0].text: empty")});
    absl::StatusOr<kvc::v1::CompressResponse> response = client_->Compress(SimpleCompress());
    ++expected_calls;
    EXPECT_EQ(static_cast<int>(response.status().code()), static_cast<int>(code));
    EXPECT_EQ(response.status().message(), "documents[0].text: empty");
    EXPECT_EQ(server_->compressor().calls(), expected_calls) << "code " << code << " was retried";
  }
}

TEST_F(KvcClientTest, GenerateRetriesOnlyBeforeTheFirstMessage) {
  server_->generator().FailNext({grpc::Status(grpc::UNAVAILABLE, "loading"),
                                 grpc::Status(grpc::UNAVAILABLE, "loading")});
  kvc::v1::GenerateRequest request;
  request.add_cache_ids(std::string(64, 'a'));
  request.set_query("Who?");
  std::string text;
  absl::StatusOr<kvc::v1::Usage> usage =
      client_->Generate(request, [&](const kvc::v1::TextDelta& d) { text += d.text(); });
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(text, "Hello, world");
  EXPECT_EQ(usage->finish_reason(), kvc::v1::FINISH_REASON_EOS);
  EXPECT_EQ(usage->generated_tokens(), 3);
  EXPECT_EQ(server_->generator().calls(), 3);
  EXPECT_EQ(server_->generator().last_request().query(), "Who?");

  // A stream that already delivered a delta is final, even on UNAVAILABLE.
  server_->generator().FailAfterFirstDelta(grpc::Status(grpc::UNAVAILABLE, "draining"));
  std::vector<std::string> deltas;
  usage = client_->Generate(request, [&](const kvc::v1::TextDelta& d) { deltas.push_back(d.text()); });
  EXPECT_EQ(usage.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(deltas, std::vector<std::string>{"Hello"});
  EXPECT_EQ(server_->generator().calls(), 4);
}

// Several questions: one usage per question, in order, each delta tagged with its question; Generate
// returns the last question's usage.
TEST_F(KvcClientTest, GenerateAnswersReturnsAUsagePerQuestion) {
  kvc::v1::GenerateRequest request;
  request.add_cache_ids(std::string(64, 'a'));
  for (const char* q : {"Who?", "When?", "Where?"}) request.mutable_questions()->add_queries(q);
  std::vector<std::string> text(3);
  std::vector<int> seen;
  absl::StatusOr<std::vector<kvc::v1::Usage>> usages = client_->GenerateAnswers(
      request, [&](const kvc::v1::TextDelta& d) { text[d.question()] += d.text(); },
      [&](const kvc::v1::Usage& u) { seen.push_back(u.question()); });
  ASSERT_TRUE(usages.ok()) << usages.status();
  ASSERT_EQ(usages->size(), 3u);
  EXPECT_EQ((*usages)[2].question(), 2);
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(text, (std::vector<std::string>{"Hello, world", "Hello, world", "Hello, world"}));

  absl::StatusOr<kvc::v1::Usage> last = client_->Generate(request, nullptr);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->question(), 2);
  EXPECT_EQ(server_->generator().calls(), 2);
}

// ---- deadlines ----

TEST_F(KvcClientTest, DeadlineExceeded) {
  server_->compressor().SetHang(true);
  CallOptions call;
  call.timeout = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  absl::StatusOr<kvc::v1::CompressResponse> response = client_->Compress(SimpleCompress(), call);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(190));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  // The client's default deadline applies when the call gives none.
  ClientOptions options = FastRetries(server_->target());
  options.default_deadline = absl::Milliseconds(150);
  std::unique_ptr<KvcClient> client = MakeClient(options);
  EXPECT_EQ(client->GetModelInfo().status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(server_->compressor().calls(), 2);  // deadlines are not retried
}

TEST_F(KvcClientTest, TheDeadlineBoundsRetries) {
  server_->compressor().FailNext(std::vector<grpc::Status>(10, grpc::Status(grpc::UNAVAILABLE, "busy")));
  ClientOptions options = FastRetries(server_->target());
  options.retry.initial_backoff = absl::Seconds(2);
  options.retry.max_backoff = absl::Seconds(2);
  std::unique_ptr<KvcClient> client = MakeClient(options);
  CallOptions call;
  call.timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  absl::StatusOr<kvc::v1::ModelInfo> info = client->GetModelInfo(call);
  // No wait that would outlast the deadline: the last UNAVAILABLE comes back at once.
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(server_->compressor().calls(), 1);
}

TEST_F(KvcClientTest, UnreachableServerIsUnavailable) {
  ClientOptions options = FastRetries("127.0.0.1:1");
  options.retry.max_attempts = 2;
  std::unique_ptr<KvcClient> client = MakeClient(options);
  absl::StatusOr<kvc::v1::ListCachesResponse> page = client->ListCaches({});
  EXPECT_EQ(page.status().code(), absl::StatusCode::kUnavailable) << page.status();
}

// ---- auth ----

TEST_F(KvcClientTest, BearerTokenIsSent) {
  TestServerOptions options;
  options.tokens = {"s3cret"};
  StartServer(options);

  absl::StatusOr<kvc::v1::ListCachesResponse> denied = client_->ListCaches({});
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kUnauthenticated) << denied.status();
  EXPECT_EQ(client_->Compress(SimpleCompress()).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(server_->compressor().calls(), 0);
  // Health needs no token.
  EXPECT_TRUE(client_->Health("").ok());

  ClientOptions with_token = FastRetries(server_->target());
  with_token.bearer_token = "s3cret";
  std::unique_ptr<KvcClient> client = MakeClient(with_token);
  EXPECT_TRUE(client->ListCaches({}).ok());
  ASSERT_TRUE(client->Compress(SimpleCompress()).ok());
  EXPECT_EQ(server_->compressor().last_authorization(), "Bearer s3cret");

  ClientOptions wrong = with_token;
  wrong.bearer_token = "s3creT";
  EXPECT_EQ(MakeClient(wrong)->ListCaches({}).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(KvcClientTest, MutualTls) {
  absl::StatusOr<kvc::testing::TestCerts> certs = kvc::testing::TestCertificates();
  ASSERT_TRUE(certs.ok()) << certs.status();
  TestServerOptions options;
  options.tls = {certs->server_cert, certs->server_key, certs->ca};
  options.tokens = {"tok"};
  StartServer(options);

  ClientOptions tls = FastRetries(server_->target());
  tls.retry.max_attempts = 1;
  tls.default_deadline = absl::Seconds(10);
  tls.bearer_token = "tok";
  tls.tls_root_ca_file = certs->ca;
  tls.tls_cert_file = certs->client_cert;
  tls.tls_key_file = certs->client_key;
  absl::StatusOr<kvc::v1::ListCachesResponse> page = MakeClient(tls)->ListCaches({});
  EXPECT_TRUE(page.ok()) << page.status();
  // The certificate names localhost too; tls_server_name checks against that name instead.
  ClientOptions by_name = tls;
  by_name.tls_server_name = "localhost";
  EXPECT_TRUE(MakeClient(by_name)->GetModelInfo().ok());
  ClientOptions wrong_name = tls;
  wrong_name.tls_server_name = "elsewhere.example";
  EXPECT_EQ(MakeClient(wrong_name)->GetModelInfo().status().code(), absl::StatusCode::kUnavailable);

  ClientOptions no_client_cert = tls;
  no_client_cert.tls_cert_file.clear();
  no_client_cert.tls_key_file.clear();
  EXPECT_EQ(MakeClient(no_client_cert)->ListCaches({}).status().code(), absl::StatusCode::kUnavailable);
  ClientOptions plaintext = FastRetries(server_->target());
  plaintext.retry.max_attempts = 1;
  plaintext.bearer_token = "tok";
  EXPECT_EQ(MakeClient(plaintext)->ListCaches({}).status().code(), absl::StatusCode::kUnavailable);
}

// ---- the cache role ----

TEST_F(KvcClientTest, PutThenGetRoundTripsGoldenFiles) {
  ClientOptions options = FastRetries(server_->target());
  options.put_chunk_bytes = 4096;  // several data chunks per value
  std::unique_ptr<KvcClient> client = MakeClient(options);
  std::vector<std::string> ids;
  for (const auto& [name, bytes] : GoldenKvcs()) {
    SCOPED_TRACE(name);
    const std::string id = Sha256Hex(bytes);
    ids.push_back(id);
    absl::StatusOr<kvc::v1::PutCacheResponse> put = client->PutCache(id, bytes);
    ASSERT_TRUE(put.ok()) << put.status();
    EXPECT_EQ(put->cache_id(), id);
    EXPECT_FALSE(put->replaced());
    EXPECT_EQ(put->info().bytes(), static_cast<int64_t>(bytes.size()));

    absl::StatusOr<FetchedCache> got = client->GetCache(id);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->bytes == bytes);
    EXPECT_EQ(got->header.total_bytes(), static_cast<int64_t>(bytes.size()));

    // The client's own reading of the header agrees with the server's.
    absl::StatusOr<kvc::v1::CacheInfo> local = DescribeKvcBytes(got->bytes, id, {.verify_sections = true});
    ASSERT_TRUE(local.ok()) << local.status();
    const kvc::v1::CacheInfo& remote = got->header.info();
    EXPECT_EQ(local->model(), remote.model());
    EXPECT_EQ(local->model_fingerprint(), remote.model_fingerprint());
    EXPECT_EQ(local->spec().method(), remote.spec().method());
    EXPECT_EQ(local->spec().budget_case(), remote.spec().budget_case());
    EXPECT_EQ(local->tokens_in(), remote.tokens_in());
    EXPECT_EQ(local->tokens_out(), remote.tokens_out());
    EXPECT_EQ(local->prefix_tokens(), remote.prefix_tokens());
    EXPECT_EQ(local->next_position(), remote.next_position());
    EXPECT_EQ(local->layers(), remote.layers());
    EXPECT_EQ(local->kv_heads(), remote.kv_heads());
    EXPECT_EQ(local->head_dim(), remote.head_dim());
    EXPECT_EQ(local->dtype(), remote.dtype());
    EXPECT_EQ(local->codec(), remote.codec());
    EXPECT_EQ(local->bytes(), remote.bytes());
    EXPECT_EQ(local->format_version(), remote.format_version());

    absl::StatusOr<kvc::v1::PutCacheResponse> again = client->PutCache(id, bytes);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_TRUE(again->replaced());

    absl::StatusOr<kvc::v1::StatCacheResponse> stat = client->StatCache(id, /*include_info=*/true);
    ASSERT_TRUE(stat.ok()) << stat.status();
    EXPECT_EQ(stat->entry().bytes(), static_cast<int64_t>(bytes.size()));
    EXPECT_EQ(stat->info().layers(), local->layers());
  }

  // Pages of two, in id order.
  std::vector<std::string> listed;
  kvc::v1::ListCachesRequest request;
  request.set_page_size(2);
  int pages = 0;
  do {
    absl::StatusOr<kvc::v1::ListCachesResponse> page = client->ListCaches(request);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const kvc::v1::CacheEntry& e : page->entries()) listed.push_back(e.cache_id());
    request.set_page_token(page->next_page_token());
    ++pages;
  } while (!request.page_token().empty());
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(listed, ids);
  EXPECT_EQ(pages, 2);

  ASSERT_TRUE(client->DeleteCache(ids[0]).ok());
  EXPECT_EQ(client->GetCache(ids[0]).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client->DeleteCache(ids[0]).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client->StatCache("not-an-id", false).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(KvcClientTest, PutOfACorruptValueIsRefused) {
  std::string bytes = GoldenKvcs()[0].second;
  bytes[bytes.size() - 10] ^= 0x5a;  // inside the last section: its checksum no longer matches
  const std::string id = Sha256Hex(bytes);
  absl::StatusOr<kvc::v1::PutCacheResponse> put = client_->PutCache(id, bytes);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kDataLoss) << put.status();
  EXPECT_EQ(client_->StatCache(id, false).status().code(), absl::StatusCode::kNotFound);
}

// A cache role that answers Get with a scripted, broken stream.
class BrokenGetService final : public kvc::v1::CacheService::CallbackService {
 public:
  enum class Fault { kWrongDigest, kShort, kDataFirst };
  explicit BrokenGetService(std::string value) : value_(std::move(value)) {}
  void set_fault(Fault fault) { fault_ = fault; }
  int calls() const { return calls_; }

  grpc::ServerWriteReactor<kvc::v1::CacheChunk>* Get(grpc::CallbackServerContext*,
                                                     const kvc::v1::GetCacheRequest* request) override {
    ++calls_;
    std::vector<kvc::v1::CacheChunk> messages;
    kvc::v1::CacheChunk header;
    header.mutable_header()->set_cache_id(request->cache_id());
    header.mutable_header()->set_total_bytes(static_cast<int64_t>(value_.size()));
    Sha256 h;
    h.Update(fault_.load() == Fault::kWrongDigest ? value_ + "x" : value_);
    const auto digest = h.Final();
    header.mutable_header()->set_sha256(std::string(reinterpret_cast<const char*>(digest.data()), 32));
    kvc::v1::CacheChunk data;
    data.set_data(fault_.load() == Fault::kShort ? value_.substr(0, value_.size() / 2) : value_);
    if (fault_.load() == Fault::kDataFirst) {
      messages = {data, header};
    } else {
      messages = {header, data};
    }
    return new Writer(std::move(messages));
  }

 private:
  class Writer final : public grpc::ServerWriteReactor<kvc::v1::CacheChunk> {
   public:
    explicit Writer(std::vector<kvc::v1::CacheChunk> messages) : messages_(std::move(messages)) { Next(); }
    void OnWriteDone(bool ok) override { ok ? Next() : Finish(grpc::Status::CANCELLED); }
    void OnDone() override { delete this; }

   private:
    void Next() { next_ < messages_.size() ? StartWrite(&messages_[next_++]) : Finish(grpc::Status::OK); }
    std::vector<kvc::v1::CacheChunk> messages_;
    size_t next_ = 0;
  };

  const std::string value_;
  std::atomic<Fault> fault_{Fault::kWrongDigest};
  std::atomic<int> calls_{0};
};

TEST_F(KvcClientTest, GetDetectsDigestAndLengthMismatches) {
  BrokenGetService broken(GoldenKvcs()[1].second);
  TestServerOptions options;
  options.cache_service_override = &broken;
  StartServer(options);
  const std::string id(64, 'e');

  broken.set_fault(BrokenGetService::Fault::kWrongDigest);
  absl::StatusOr<FetchedCache> got = client_->GetCache(id);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_NE(got.status().message().find("SHA-256"), absl::string_view::npos);

  broken.set_fault(BrokenGetService::Fault::kShort);
  got = client_->GetCache(id);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();

  broken.set_fault(BrokenGetService::Fault::kDataFirst);
  got = client_->GetCache(id);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInternal) << got.status();
  EXPECT_EQ(broken.calls(), 3);  // none of these is retried
}

// ---- compress role, health ----

TEST_F(KvcClientTest, PrecomputeAndModelInfo) {
  kvc::v1::PrecomputeRequest request;
  request.set_mode(kvc::v1::PRECOMPUTE_MODE_FULL);
  for (const char* text : {"first", "second"}) {
    kvc::v1::Document* d = request.add_documents();
    d->set_text(text);
    d->set_id(text);
  }
  absl::StatusOr<kvc::v1::PrecomputeResponse> first = client_->Precompute(request);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->results_size(), 2);
  EXPECT_EQ(first->results(1).document_id(), "second");
  EXPECT_FALSE(first->results(0).cache_hit());
  absl::StatusOr<kvc::v1::PrecomputeResponse> second = client_->Precompute(request);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->results(0).cache_hit());

  absl::StatusOr<kvc::v1::ModelInfo> info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name(), "fake-model");
  EXPECT_EQ(info->methods_size(), 2);
}

TEST_F(KvcClientTest, HealthPerService) {
  EXPECT_EQ(*client_->Health(""), ServingStatus::kServing);
  EXPECT_EQ(*client_->Health("kvc.v1.Compressor"), ServingStatus::kServing);
  server_->SetServing("kvc.v1.Generator", false);
  EXPECT_EQ(*client_->Health("kvc.v1.Generator"), ServingStatus::kNotServing);
  EXPECT_EQ(client_->Health("kvc.v1.Nothing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_STREQ(ServingStatusName(ServingStatus::kNotServing), "NOT_SERVING");
}

// ---- one client, many threads ----

TEST_F(KvcClientTest, OneClientFromManyThreads) {
  const std::vector<std::pair<std::string, std::string>> golden = GoldenKvcs();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        const std::string& bytes = golden[(t + i) % golden.size()].second;
        const std::string id = Sha256Hex(absl::StrCat(t, "/", i));
        if (!client_->PutCache(id, bytes).ok()) ++failures;
        absl::StatusOr<FetchedCache> got = client_->GetCache(id);
        if (!got.ok() || got->bytes != bytes) ++failures;
        if (!client_->ListCaches({}).ok()) ++failures;
        if (!client_->Compress(SimpleCompress()).ok()) ++failures;
        kvc::v1::GenerateRequest g;
        g.add_cache_ids(id);
        g.set_query("q");
        std::string text;
        absl::StatusOr<kvc::v1::Usage> usage =
            client_->Generate(g, [&](const kvc::v1::TextDelta& d) { text += d.text(); });
        if (!usage.ok() || text != "Hello, world") ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  absl::StatusOr<kvc::v1::ListCachesResponse> page = client_->ListCaches({});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->entries_size(), 100);  // the default page size; 128 are stored
  EXPECT_FALSE(page->next_page_token().empty());
}

// ---- creation ----

TEST(KvcClientCreateTest, RejectsBadOptions) {
  ClientOptions options;
  options.retry.max_attempts = 0;
  EXPECT_EQ(KvcClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = ClientOptions();
  options.put_chunk_bytes = (1 << 20) + 1;
  EXPECT_EQ(KvcClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = ClientOptions();
  options.default_deadline = absl::ZeroDuration();
  EXPECT_EQ(KvcClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = ClientOptions();
  options.max_message_bytes = 1 << 20;
  EXPECT_EQ(KvcClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = ClientOptions();
  options.tls_root_ca_file = "/nonexistent/ca.pem";
  absl::Status missing = KvcClient::Create(options).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("tls_root_ca_file"), absl::string_view::npos);
  options = ClientOptions();
  options.tls_cert_file = "/nonexistent/cert.pem";
  EXPECT_EQ(KvcClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = ClientOptions();
  options.target = "";
  EXPECT_EQ(KvcClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(KvcClient::Create(ClientOptions()).ok());  // no connection is made at creation
}

}  // namespace
}  // namespace kvc
