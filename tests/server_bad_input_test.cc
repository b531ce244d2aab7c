// End to end: a table of bad inputs against the real kvc-server binary, each with the status code the
// contract (proto/kvc/v1) gives it and, where the contract promises one, the field its message names. Three
// servers run the tiny_chat model: the main one, one that requires a bearer token (KVC_AUTH_TOKENS), and
// one with a tiny scheduler queue and the smallest message limit (and the test pause points, which hold one
// call on the device and another in the queue for the queue row). After the whole table every server must
// still answer good requests.
//
// A cancel or a deadline that lands while the work runs is server_stop_phases_test's, phase by phase.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "service/pause_points.h"
#include "tests/support/call_in_flight.h"
#include "tests/support/kvc_test_client.h"
#include "tests/support/server_process.h"
#include "tests/support/testdata.h"

namespace kvc::testing {
namespace {

using grpc::StatusCode;

const char kQuestion[] = "What is the capital of France?";
const char kToken[] = "secret";

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Deterministic distinct cache ids for rows that need one of their own.
std::string IdFor(int n) {
  std::string hex = absl::StrCat(absl::Hex(0x5eed0000 + n, absl::kZeroPad8));
  std::string id;
  while (id.size() < 64) id += hex;
  return id.substr(0, 64);
}

struct Row {
  std::string name;
  StatusCode code;
  std::string field;  // the error message must contain this ("": not checked)
  std::function<grpc::Status()> call;
};

class ServerBadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::vector<std::string> model = {"--model", TestData("tiny_chat"), "--metrics-listen", "127.0.0.1:0"};
    main_ = StartOrNull({.args = model});
    ServerProcessOptions auth{.args = model, .env = {{"KVC_AUTH_TOKENS", kToken}}, .auth_token = kToken};
    auth_ = StartOrNull(auth);
    std::vector<std::string> small_args = model;
    small_args.insert(small_args.end(), {"--max-queue-tokens", "600", "--max-message-bytes", "4194304"});
    small_ = StartOrNull({.args = small_args, .pause_points = true});
    if (main_ == nullptr || auth_ == nullptr || small_ == nullptr) return;
    main_stubs_ = new KvcStubs(main_->NewChannel());
    auth_stubs_ = new KvcStubs(auth_->NewChannel());
    small_stubs_ = new KvcStubs(small_->NewChannel());
  }
  static ServerProcess* StartOrNull(ServerProcessOptions options) {
    auto server = ServerProcess::Start(std::move(options));
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? server->release() : nullptr;
  }
  static void TearDownTestSuite() {
    for (KvcStubs** s : {&main_stubs_, &auth_stubs_, &small_stubs_}) {
      delete *s;
      *s = nullptr;
    }
    for (ServerProcess** p : {&main_, &auth_, &small_}) {
      if (*p != nullptr) {
        absl::StatusOr<int> code = (*p)->Stop();
        EXPECT_TRUE(code.ok() && *code == 0) << (code.ok() ? absl::StrCat("exit ", *code) : code.status().ToString())
                                             << "\n" << (*p)->Log();
      }
      delete *p;
      *p = nullptr;
    }
  }
  void TearDown() override {
    if (!HasFailure()) return;
    for (ServerProcess* p : {main_, auth_, small_}) {
      if (p == nullptr) continue;
      const std::string log = p->Log();
      ADD_FAILURE() << "kvc-server on port " << p->port() << ", log tail:\n"
                    << log.substr(log.size() > 60000 ? log.size() - 60000 : 0);
    }
  }
  void SetUp() override {
    ASSERT_NE(main_stubs_, nullptr);
    ASSERT_NE(auth_stubs_, nullptr);
    ASSERT_NE(small_stubs_, nullptr);
  }

  // --- good requests, the rows' starting points ---

  static v1::CompressRequest GoodCompress(const std::string& salt = "") {
    v1::CompressRequest r;
    r.add_documents()->set_text("The capital of France is Paris. " + FillerText(60, 3) + salt);
    r.set_query(kQuestion);
    r.mutable_spec()->set_method("finch");
    r.mutable_spec()->set_ratio(2);
    (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "32";
    return r;
  }
  static v1::PrecomputeRequest GoodPrecompute() {
    v1::PrecomputeRequest r;
    r.add_documents()->set_text("Water boils at one hundred degrees Celsius. " + FillerText(40, 5));
    r.set_mode(v1::PRECOMPUTE_MODE_QUERY_AGNOSTIC);
    r.mutable_spec()->set_method("knorm");
    r.mutable_spec()->set_ratio(2);
    return r;
  }
  static v1::GenerateRequest GoodGenerate(const std::string& cache_id) {
    v1::GenerateRequest r;
    r.add_cache_ids(cache_id);
    r.set_query(kQuestion);
    r.mutable_sampling()->set_max_tokens(4);
    return r;
  }

  // --- calls ---

  static grpc::Status Compress(KvcStubs& s, const v1::CompressRequest& r, const CallOptions& o = {},
                               v1::CompressResponse* out = nullptr) {
    grpc::ClientContext ctx;
    Configure(ctx, o);
    v1::CompressResponse ignored;
    return s.compressor->Compress(&ctx, r, out != nullptr ? out : &ignored);
  }
  static grpc::Status Precompute(KvcStubs& s, const v1::PrecomputeRequest& r, v1::PrecomputeResponse* out = nullptr) {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    v1::PrecomputeResponse ignored;
    return s.compressor->Precompute(&ctx, r, out != nullptr ? out : &ignored);
  }
  // A failed stream must carry no usage message.
  static grpc::Status GenerateStatus(KvcStubs& s, const v1::GenerateRequest& r, const CallOptions& o = {}) {
    GenerateResult g = Generate(*s.generator, r, o);
    if (!g.status.ok() && g.usage_messages != 0) {
      return grpc::Status(StatusCode::INTERNAL, "test: a failed Generate stream carried a usage message");
    }
    return g.status;
  }
  static grpc::Status Get(KvcStubs& s, const std::string& id, std::optional<int32_t> chunk_bytes = std::nullopt) {
    v1::GetCacheRequest r;
    r.set_cache_id(id);
    if (chunk_bytes) r.set_chunk_bytes(*chunk_bytes);
    return GetCache(*s.cache, r).status;
  }
  static grpc::Status Stat(KvcStubs& s, const std::string& id, const CallOptions& o = {}) {
    grpc::ClientContext ctx;
    Configure(ctx, o);
    v1::StatCacheRequest r;
    r.set_cache_id(id);
    v1::StatCacheResponse out;
    return s.cache->Stat(&ctx, r, &out);
  }
  static grpc::Status Delete(KvcStubs& s, const std::string& id) {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    v1::DeleteCacheRequest r;
    r.set_cache_id(id);
    v1::DeleteCacheResponse out;
    return s.cache->Delete(&ctx, r, &out);
  }
  static grpc::Status List(KvcStubs& s, const v1::ListCachesRequest& r, const CallOptions& o = {}) {
    grpc::ClientContext ctx;
    Configure(ctx, o);
    v1::ListCachesResponse out;
    return s.cache->List(&ctx, r, &out);
  }
  static grpc::Status Put(KvcStubs& s, const std::vector<v1::CacheChunk>& chunks) {
    return PutChunks(*s.cache, chunks, nullptr);
  }

  // `request` serialized with `placeholder` (which must appear once) replaced by `bytes` of the same
  // length: how a client that skips UTF-8 checks would send an invalid string.
  template <typename Message>
  static grpc::Status RawWithBytes(KvcStubs& s, const std::string& method, const Message& request,
                                   const std::string& placeholder, const std::string& bytes) {
    std::string wire = request.SerializeAsString();
    const size_t at = wire.find(placeholder);
    if (at == std::string::npos || bytes.size() != placeholder.size()) {
      return grpc::Status(StatusCode::INTERNAL, "test: placeholder not found");
    }
    wire.replace(at, placeholder.size(), bytes);
    return RawUnaryCall(*s.channel, method, wire, nullptr);
  }

  inline static ServerProcess* main_ = nullptr;
  inline static ServerProcess* auth_ = nullptr;
  inline static ServerProcess* small_ = nullptr;
  inline static KvcStubs* main_stubs_ = nullptr;
  inline static KvcStubs* auth_stubs_ = nullptr;
  inline static KvcStubs* small_stubs_ = nullptr;
};

TEST_F(ServerBadInputTest, EveryBadInputGetsItsCodeAndTheServersSurvive) {
  KvcStubs& m = *main_stubs_;
  KvcStubs& a = *auth_stubs_;
  KvcStubs& q = *small_stubs_;

  // Fixtures in the main store: a compressed cache, two full ones, and a foreign model's cache.
  v1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    ASSERT_TRUE(m.compressor->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).ok());
  }
  const int vocab = info.vocab_size();
  const int64_t window = info.max_position_embeddings();
  v1::CompressResponse good;
  ASSERT_TRUE(Compress(m, GoodCompress(), {}, &good).ok());
  const std::string good_id = good.cache_id();
  v1::PrecomputeRequest full_request = GoodPrecompute();
  full_request.set_mode(v1::PRECOMPUTE_MODE_FULL);
  full_request.clear_spec();
  v1::PrecomputeResponse full;
  ASSERT_TRUE(Precompute(m, full_request, &full).ok());
  const std::string full_id = full.results(0).cache_id();
  GetResult value = GetCache(*m.cache, [&] {
    v1::GetCacheRequest r;
    r.set_cache_id(good_id);
    return r;
  }());
  ASSERT_TRUE(value.status.ok());
  const std::string kvc = value.value;
  const std::string foreign = ReadBytes(EnvOr("KVC_SOURCE_DIR", ".") + "/tests/testdata/kvc/v1_f32_none.kvc");
  ASSERT_GT(foreign.size(), 100u);
  const std::string foreign_id = IdFor(9999);
  ASSERT_TRUE(Put(m, PutStream(foreign_id, foreign)).ok()) << "a .kvc of another model is a valid value";
  // A cache in the small server's store for its Generate row.
  v1::CompressResponse small_good;
  ASSERT_TRUE(Compress(q, GoodCompress(), {}, &small_good).ok());

  using CR = v1::CompressRequest;
  auto compress = [&](std::function<void(CR&)> edit, KvcStubs* s = nullptr, CallOptions o = {}) {
    return [=, &m] {
      CR r = GoodCompress();
      edit(r);
      return Compress(s != nullptr ? *s : m, r, o);
    };
  };
  using PR = v1::PrecomputeRequest;
  auto precompute = [&](std::function<void(PR&)> edit) {
    return [=, &m] {
      PR r = GoodPrecompute();
      edit(r);
      return Precompute(m, r);
    };
  };
  using GR = v1::GenerateRequest;
  auto generate = [&](std::function<void(GR&)> edit, KvcStubs* s = nullptr, CallOptions o = {}) {
    return [=, &m] {
      GR r = GoodGenerate(good_id);
      edit(r);
      return GenerateStatus(s != nullptr ? *s : m, r, o);
    };
  };
  auto put = [&](std::function<void(std::vector<v1::CacheChunk>&)> edit, int n) {
    return [=, &m] {
      std::vector<v1::CacheChunk> chunks = PutStream(IdFor(n), kvc, 1000);
      edit(chunks);
      return Put(m, chunks);
    };
  };
  auto spec_option = [](const std::string& name, const std::string& value) {
    return [=](CR& r) { (*r.mutable_spec()->mutable_options())[name] = value; };
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::string upper_id = [&] {
    std::string s = good_id;
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  }();
  const std::string unknown_id = IdFor(4242);
  const std::string long_text = FillerText(static_cast<int>(info.limits().max_context_tokens()) + 1000, 77);
  const std::string bad_utf8 = "\xc3\x28\xff\xfe\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\xf8\xa1\xa1";
  const std::string placeholder = "UTF8PLACEHOLDER!";
  ASSERT_EQ(bad_utf8.size(), placeholder.size());
  // The ids of the Put rows: none of them may be stored afterwards.
  std::vector<std::string> put_ids;
  for (int n = 100; n < 120; ++n) put_ids.push_back(IdFor(n));

  std::vector<Row> rows = {
      // Documents.
      {"compress: no documents", StatusCode::INVALID_ARGUMENT, "documents",
       compress([](CR& r) { r.clear_documents(); })},
      {"compress: empty text", StatusCode::INVALID_ARGUMENT, "documents[0].text",
       compress([](CR& r) { r.mutable_documents(0)->set_text(""); })},
      {"compress: second document empty", StatusCode::INVALID_ARGUMENT, "documents[1].text",
       compress([](CR& r) { r.add_documents()->set_text(""); })},
      {"compress: empty token id list", StatusCode::INVALID_ARGUMENT, "documents[0].token_ids",
       compress([](CR& r) { r.mutable_documents(0)->mutable_token_ids(); })},
      {"compress: document without content", StatusCode::INVALID_ARGUMENT, "documents[0]",
       compress([](CR& r) { r.mutable_documents(0)->clear_content(); })},
      {"compress: document label over 256 bytes", StatusCode::INVALID_ARGUMENT, "documents[0].id",
       compress([](CR& r) { r.mutable_documents(0)->set_id(std::string(300, 'x')); })},
      {"compress: text over limits.max_context_tokens", StatusCode::OUT_OF_RANGE, "documents",
       compress([&](CR& r) { r.mutable_documents(0)->set_text(long_text); })},
      {"compress: too many documents", StatusCode::INVALID_ARGUMENT, "documents",
       compress([&](CR& r) {
         for (int i = 0; i <= info.limits().max_documents(); ++i) r.add_documents()->set_text("a");
       })},
      {"compress: documents and document_cache_ids", StatusCode::INVALID_ARGUMENT, "document_cache_ids",
       compress([&](CR& r) { r.add_document_cache_ids(full_id); })},
      {"compress: token id -1", StatusCode::INVALID_ARGUMENT, "documents[0].token_ids[2]",
       compress([](CR& r) {
         for (int id : {5, 6, -1, 7}) r.mutable_documents(0)->mutable_token_ids()->add_ids(id);
       })},
      {"compress: token id == vocab_size", StatusCode::INVALID_ARGUMENT, "documents[0].token_ids[1]",
       compress([&](CR& r) {
         for (int id : {5, vocab}) r.mutable_documents(0)->mutable_token_ids()->add_ids(id);
       })},
      {"compress: suffix id out of range", StatusCode::INVALID_ARGUMENT, "suffix_ids",
       compress([&](CR& r) {
         for (int id : {5, vocab + 100}) r.mutable_suffix_ids()->add_ids(id);
       })},
      // Invalid UTF-8 in a string field fails protobuf's parse before kvc sees the request. gRPC 1.51's
      // callback server answers a request it cannot parse with UNIMPLEMENTED (not the INTERNAL that
      // common.proto mentions); what matters here is that the call fails cleanly and the server lives on.
      {"compress: invalid UTF-8 in documents[0].text", StatusCode::UNIMPLEMENTED, "",
       [&] {
         CR r = GoodCompress();
         r.mutable_documents(0)->set_text(placeholder);
         return RawWithBytes(m, "/kvc.v1.Compressor/Compress", r, placeholder, bad_utf8);
       }},
      {"compress: invalid UTF-8 in query", StatusCode::UNIMPLEMENTED, "",
       [&] {
         CR r = GoodCompress();
         r.set_query(placeholder);
         return RawWithBytes(m, "/kvc.v1.Compressor/Compress", r, placeholder, bad_utf8);
       }},
      {"compress: bytes that are not a CompressRequest", StatusCode::UNIMPLEMENTED, "",
       [&] { return RawUnaryCall(*m.channel, "/kvc.v1.Compressor/Compress", "\xff\xff\xff\xff\x0f", nullptr); }},
      {"compress: system prompt over 4096 tokens", StatusCode::OUT_OF_RANGE, "system_prompt",
       compress([](CR& r) { r.set_system_prompt(FillerText(5000, 8)); })},
      {"compress: query over limits.max_query_tokens", StatusCode::OUT_OF_RANGE, "query",
       compress([&](CR& r) { r.set_query(FillerText(static_cast<int>(info.limits().max_query_tokens()) + 100, 9)); })},
      // Specs.
      {"spec: no budget", StatusCode::INVALID_ARGUMENT, "spec",
       compress([](CR& r) { r.mutable_spec()->clear_budget(); })},
      {"spec: ratio 0.5", StatusCode::OUT_OF_RANGE, "spec.ratio",
       compress([](CR& r) { r.mutable_spec()->set_ratio(0.5); })},
      {"spec: ratio 0", StatusCode::OUT_OF_RANGE, "spec.ratio",
       compress([](CR& r) { r.mutable_spec()->set_ratio(0); })},
      {"spec: ratio -4", StatusCode::OUT_OF_RANGE, "spec.ratio",
       compress([](CR& r) { r.mutable_spec()->set_ratio(-4); })},
      {"spec: ratio NaN", StatusCode::OUT_OF_RANGE, "spec.ratio",
       compress([=](CR& r) { r.mutable_spec()->set_ratio(nan); })},
      {"spec: ratio +inf", StatusCode::OUT_OF_RANGE, "spec.ratio",
       compress([=](CR& r) { r.mutable_spec()->set_ratio(inf); })},
      {"spec: target_tokens 0", StatusCode::OUT_OF_RANGE, "spec.target_tokens",
       compress([](CR& r) { r.mutable_spec()->set_target_tokens(0); })},
      {"spec: target_tokens -3", StatusCode::OUT_OF_RANGE, "spec.target_tokens",
       compress([](CR& r) { r.mutable_spec()->set_target_tokens(-3); })},
      {"spec: target_tokens over the context", StatusCode::OUT_OF_RANGE, "target_tokens",
       compress([](CR& r) { r.mutable_spec()->set_target_tokens(100000); })},
      {"spec: chunk_tokens 0", StatusCode::OUT_OF_RANGE, "spec.options.chunk_tokens",
       compress(spec_option("chunk_tokens", "0"))},
      {"spec: chunk_tokens past the model window", StatusCode::OUT_OF_RANGE, "options.chunk_tokens",
       compress(spec_option("chunk_tokens", std::to_string(window + 1)))},
      {"spec: chunk_tokens not a number", StatusCode::INVALID_ARGUMENT, "spec.options.chunk_tokens",
       compress(spec_option("chunk_tokens", "lots"))},
      {"spec: granularity 'token'", StatusCode::INVALID_ARGUMENT, "spec.options.granularity",
       compress(spec_option("granularity", "token"))},
      {"spec: normalize 'maybe'", StatusCode::INVALID_ARGUMENT, "spec.options.normalize",
       compress(spec_option("normalize", "maybe"))},
      {"spec: unknown option", StatusCode::INVALID_ARGUMENT, "spec.options.compression_level",
       compress(spec_option("compression_level", "9"))},
      {"spec: snapkv option on finch", StatusCode::INVALID_ARGUMENT, "spec.options.kernel",
       compress(spec_option("kernel", "5"))},
      {"spec: snapkv window past the context", StatusCode::OUT_OF_RANGE, "window",
       compress([](CR& r) {
         r.mutable_spec()->set_method("snapkv");
         r.mutable_spec()->mutable_options()->clear();
         (*r.mutable_spec()->mutable_options())["window"] = "100000";
       })},
      {"spec: unknown method", StatusCode::INVALID_ARGUMENT, "spec.method",
       compress([](CR& r) { r.mutable_spec()->set_method("lz4"); })},
      {"spec: method names are case-sensitive", StatusCode::INVALID_ARGUMENT, "spec.method",
       compress([](CR& r) { r.mutable_spec()->set_method("Finch"); })},
      {"spec: cache_dtype outside the enum", StatusCode::INVALID_ARGUMENT, "cache_dtype",
       compress([](CR& r) { r.set_cache_dtype(static_cast<v1::CacheDtype>(42)); })},
      {"spec: cache_codec outside the enum", StatusCode::INVALID_ARGUMENT, "cache_codec",
       compress([](CR& r) { r.set_cache_codec(static_cast<v1::CacheCodec>(42)); })},
      {"finch: empty query", StatusCode::INVALID_ARGUMENT, "query",
       compress([](CR& r) { r.set_query(""); })},
      {"finch: no question at all", StatusCode::INVALID_ARGUMENT, "query",
       compress([](CR& r) { r.clear_question(); })},
      {"finch: empty suffix_ids", StatusCode::INVALID_ARGUMENT, "query",
       compress([](CR& r) { r.mutable_suffix_ids(); })},
      {"compress: wrong model name", StatusCode::FAILED_PRECONDITION, "model",
       compress([](CR& r) { r.set_model("SmolLM2-135M-Instruct"); })},
      {"compress: wrong model fingerprint", StatusCode::FAILED_PRECONDITION, "model",
       compress([](CR& r) { r.set_model(std::string(64, 'a')); })},
      // document_cache_ids.
      {"compress: malformed document_cache_id", StatusCode::INVALID_ARGUMENT, "document_cache_ids[0]",
       compress([](CR& r) {
         r.clear_documents();
         r.add_document_cache_ids("not-a-cache-id");
       })},
      {"compress: unknown document_cache_id", StatusCode::NOT_FOUND, "document_cache_ids[1]",
       compress([&](CR& r) {
         r.clear_documents();
         r.add_document_cache_ids(full_id);
         r.add_document_cache_ids(unknown_id);
       })},
      {"compress: document_cache_id of a compressed cache", StatusCode::FAILED_PRECONDITION, "document_cache_ids[0]",
       compress([&](CR& r) {
         r.clear_documents();
         r.add_document_cache_ids(good_id);
       })},
      {"compress: document_cache_id of another model", StatusCode::FAILED_PRECONDITION, "document_cache_ids[0]",
       compress([&](CR& r) {
         r.clear_documents();
         r.add_document_cache_ids(foreign_id);
       })},
      // Precompute.
      {"precompute: mode unspecified", StatusCode::INVALID_ARGUMENT, "mode",
       precompute([](PR& r) { r.set_mode(v1::PRECOMPUTE_MODE_UNSPECIFIED); })},
      {"precompute: mode outside the enum", StatusCode::INVALID_ARGUMENT, "mode",
       precompute([](PR& r) { r.set_mode(static_cast<v1::PrecomputeMode>(9)); })},
      {"precompute: no documents", StatusCode::INVALID_ARGUMENT, "documents",
       precompute([](PR& r) { r.clear_documents(); })},
      {"precompute: empty document", StatusCode::INVALID_ARGUMENT, "documents[1].text",
       precompute([](PR& r) { r.add_documents()->set_text(""); })},
      {"precompute: query-aware method for QUERY_AGNOSTIC", StatusCode::INVALID_ARGUMENT, "spec.method",
       precompute([](PR& r) { r.mutable_spec()->set_method("finch"); })},
      {"precompute: FULL with a compressing method", StatusCode::INVALID_ARGUMENT, "spec.method",
       precompute([](PR& r) { r.set_mode(v1::PRECOMPUTE_MODE_FULL); })},
      {"precompute: QUERY_AGNOSTIC without budget", StatusCode::INVALID_ARGUMENT, "spec",
       precompute([](PR& r) { r.mutable_spec()->clear_budget(); })},
      {"precompute: token id out of range", StatusCode::INVALID_ARGUMENT, "documents[0].token_ids[0]",
       precompute([&](PR& r) { r.mutable_documents(0)->mutable_token_ids()->add_ids(vocab + 1); })},
      {"precompute: wrong model", StatusCode::FAILED_PRECONDITION, "model",
       precompute([](PR& r) { r.set_model("another-model"); })},
      // CacheService ids and parameters.
      {"get: malformed cache id", StatusCode::INVALID_ARGUMENT, "cache_id", [&] { return Get(m, "xyz"); }},
      {"get: uppercase cache id", StatusCode::INVALID_ARGUMENT, "cache_id", [&] { return Get(m, upper_id); }},
      {"get: 65-character cache id", StatusCode::INVALID_ARGUMENT, "cache_id", [&] { return Get(m, good_id + "0"); }},
      {"get: unknown cache id", StatusCode::NOT_FOUND, "", [&] { return Get(m, unknown_id); }},
      {"get: chunk_bytes over 1 MiB", StatusCode::INVALID_ARGUMENT, "chunk_bytes",
       [&] { return Get(m, good_id, (1 << 20) + 1); }},
      {"get: negative chunk_bytes", StatusCode::INVALID_ARGUMENT, "chunk_bytes", [&] { return Get(m, good_id, -5); }},
      {"stat: unknown cache id", StatusCode::NOT_FOUND, "", [&] { return Stat(m, unknown_id); }},
      {"stat: empty cache id", StatusCode::INVALID_ARGUMENT, "cache_id", [&] { return Stat(m, ""); }},
      {"stat: invalid UTF-8 in cache_id", StatusCode::UNIMPLEMENTED, "",
       [&] {
         v1::StatCacheRequest r;
         r.set_cache_id(placeholder);
         return RawWithBytes(m, "/kvc.v1.CacheService/Stat", r, placeholder, bad_utf8);
       }},
      {"delete: unknown cache id", StatusCode::NOT_FOUND, "", [&] { return Delete(m, unknown_id); }},
      {"delete: malformed cache id", StatusCode::INVALID_ARGUMENT, "cache_id", [&] { return Delete(m, "../etc"); }},
      {"list: prefix not hex", StatusCode::INVALID_ARGUMENT, "prefix",
       [&] {
         v1::ListCachesRequest r;
         r.set_prefix("XYZ");
         return List(m, r);
       }},
      {"list: negative page_size", StatusCode::INVALID_ARGUMENT, "page_size",
       [&] {
         v1::ListCachesRequest r;
         r.set_page_size(-1);
         return List(m, r);
       }},
      {"list: page_token the server did not issue", StatusCode::INVALID_ARGUMENT, "page_token",
       [&] {
         v1::ListCachesRequest r;
         r.set_page_token("forged-token");
         return List(m, r);
       }},
      // Corrupted Puts: each under its own fresh id, which must stay absent.
      {"put: sha256 mismatch", StatusCode::DATA_LOSS, "sha256",
       put([](auto& c) { c[0].mutable_header()->mutable_sha256()->at(0) ^= 1; }, 100)},
      {"put: a data byte flipped in transit", StatusCode::DATA_LOSS, "sha256",
       put([](auto& c) { c[1].mutable_data()->at(10) ^= 1; }, 101)},
      {"put: total_bytes smaller than the data", StatusCode::INVALID_ARGUMENT, "total_bytes",
       put([](auto& c) { c[0].mutable_header()->set_total_bytes(c[0].header().total_bytes() - 10); }, 102)},
      {"put: total_bytes larger than the data", StatusCode::DATA_LOSS, "",
       put([](auto& c) { c[0].mutable_header()->set_total_bytes(c[0].header().total_bytes() + 10); }, 103)},
      {"put: total_bytes 0", StatusCode::INVALID_ARGUMENT, "total_bytes",
       put([](auto& c) { c[0].mutable_header()->set_total_bytes(0); }, 104)},
      {"put: total_bytes past the server's limit", StatusCode::RESOURCE_EXHAUSTED, "total_bytes",
       put([](auto& c) { c[0].mutable_header()->set_total_bytes(int64_t{1} << 40); }, 105)},
      {"put: bytes that are not a .kvc", StatusCode::INVALID_ARGUMENT, "",
       [&] { return Put(m, PutStream(IdFor(106), std::string(5000, 'z'))); }},
      {"put: a truncated .kvc", StatusCode::DATA_LOSS, "",
       [&] { return Put(m, PutStream(IdFor(107), kvc.substr(0, kvc.size() - 100))); }},
      {"put: a .kvc with a section byte changed", StatusCode::DATA_LOSS, "",
       [&] {
         std::string v = kvc;
         v[v.size() - 50] ^= 0x40;
         return Put(m, PutStream(IdFor(108), v));
       }},
      {"put: data before the header", StatusCode::INVALID_ARGUMENT, "header",
       put([](auto& c) { std::swap(c[0], c[1]); }, 109)},
      {"put: a second header", StatusCode::INVALID_ARGUMENT, "header",
       put([](auto& c) { c.insert(c.begin() + 2, c[0]); }, 110)},
      {"put: sha256 of 31 bytes", StatusCode::INVALID_ARGUMENT, "sha256",
       put([](auto& c) { c[0].mutable_header()->mutable_sha256()->pop_back(); }, 111)},
      {"put: no sha256", StatusCode::INVALID_ARGUMENT, "sha256",
       put([](auto& c) { c[0].mutable_header()->clear_sha256(); }, 112)},
      {"put: an empty data chunk", StatusCode::INVALID_ARGUMENT, "data",
       put([](auto& c) { c.insert(c.begin() + 1, v1::CacheChunk())->set_data(""); }, 113)},
      {"put: a chunk with neither header nor data", StatusCode::INVALID_ARGUMENT, "",
       put([](auto& c) { c.insert(c.begin() + 1, v1::CacheChunk()); }, 114)},
      {"put: a data chunk over 1 MiB", StatusCode::INVALID_ARGUMENT, "data",
       [&] {
         std::string big(1100000, 'k');
         std::vector<v1::CacheChunk> c = PutStream(IdFor(115), big, big.size());
         return Put(m, c);
       }},
      {"put: malformed cache id", StatusCode::INVALID_ARGUMENT, "cache_id",
       put([](auto& c) { c[0].mutable_header()->set_cache_id("nope"); }, 116)},
      {"put: a stream with no messages", StatusCode::INVALID_ARGUMENT, "header", [&] { return Put(m, {}); }},
      // Generate.
      {"generate: no cache ids", StatusCode::INVALID_ARGUMENT, "cache_ids",
       generate([](GR& r) { r.clear_cache_ids(); })},
      {"generate: too many cache ids", StatusCode::INVALID_ARGUMENT, "cache_ids",
       generate([&](GR& r) {
         for (int i = 0; i < info.limits().max_documents() + 64; ++i) r.add_cache_ids(good_id);
       })},
      {"generate: malformed cache id", StatusCode::INVALID_ARGUMENT, "cache_ids[1]",
       generate([](GR& r) { r.add_cache_ids("0123"); })},
      {"generate: unknown cache id", StatusCode::NOT_FOUND, "", generate([&](GR& r) { r.add_cache_ids(unknown_id); })},
      {"generate: cache from another model", StatusCode::FAILED_PRECONDITION, "",
       generate([&](GR& r) { r.set_cache_ids(0, foreign_id); })},
      {"generate: empty prompt", StatusCode::INVALID_ARGUMENT, "prompt", generate([](GR& r) { r.set_query(""); })},
      {"generate: no prompt", StatusCode::INVALID_ARGUMENT, "prompt", generate([](GR& r) { r.clear_prompt(); })},
      {"generate: empty suffix_ids", StatusCode::INVALID_ARGUMENT, "prompt",
       generate([](GR& r) { r.mutable_suffix_ids(); })},
      {"generate: suffix id out of range", StatusCode::INVALID_ARGUMENT, "suffix_ids",
       generate([&](GR& r) { r.mutable_suffix_ids()->add_ids(vocab); })},
      {"generate: temperature -1", StatusCode::INVALID_ARGUMENT, "sampling.temperature",
       generate([](GR& r) { r.mutable_sampling()->set_temperature(-1); })},
      {"generate: temperature NaN", StatusCode::INVALID_ARGUMENT, "sampling.temperature",
       generate([=](GR& r) { r.mutable_sampling()->set_temperature(nan); })},
      {"generate: top_p 0", StatusCode::INVALID_ARGUMENT, "sampling.top_p",
       generate([](GR& r) { r.mutable_sampling()->set_top_p(0); })},
      {"generate: top_p 1.5", StatusCode::INVALID_ARGUMENT, "sampling.top_p",
       generate([](GR& r) { r.mutable_sampling()->set_top_p(1.5); })},
      {"generate: top_k -1", StatusCode::INVALID_ARGUMENT, "sampling.top_k",
       generate([](GR& r) { r.mutable_sampling()->set_top_k(-1); })},
      {"generate: max_tokens 0", StatusCode::INVALID_ARGUMENT, "sampling.max_tokens",
       generate([](GR& r) { r.mutable_sampling()->set_max_tokens(0); })},
      {"generate: cached + prompt + max_tokens over the window", StatusCode::OUT_OF_RANGE, "max_tokens",
       generate([&](GR& r) { r.mutable_sampling()->set_max_tokens(static_cast<int32_t>(window)); })},
      {"generate: an empty stop string", StatusCode::INVALID_ARGUMENT, "sampling.stop",
       generate([](GR& r) { r.mutable_sampling()->add_stop(""); })},
      {"generate: 17 stop strings", StatusCode::INVALID_ARGUMENT, "sampling.stop",
       generate([](GR& r) {
         for (int i = 0; i < 17; ++i) r.mutable_sampling()->add_stop(absl::StrCat("stop", i));
       })},
      {"generate: wrong model", StatusCode::FAILED_PRECONDITION, "model",
       generate([](GR& r) { r.set_model("SmolLM2-135M-Instruct"); })},
      {"generate: invalid UTF-8 in query", StatusCode::UNIMPLEMENTED, "",
       [&] {
         GR r = GoodGenerate(good_id);
         r.set_query(placeholder);
         return RawWithBytes(m, "/kvc.v1.Generator/Generate", r, placeholder, bad_utf8);
       }},
      // Methods that do not exist.
      {"unknown method of a known service", StatusCode::UNIMPLEMENTED, "",
       [&] { return RawUnaryCall(*m.channel, "/kvc.v1.Compressor/Decompress", "", nullptr); }},
      {"unknown service", StatusCode::UNIMPLEMENTED, "",
       [&] { return RawUnaryCall(*m.channel, "/kvc.v2.Compressor/Compress", "", nullptr); }},
      // Deadlines and cancellation.
      {"compress: deadline already expired", StatusCode::DEADLINE_EXCEEDED, "",
       compress([](CR&) {}, nullptr, {.timeout = std::chrono::milliseconds(-1000)})},
      {"generate: deadline already expired", StatusCode::DEADLINE_EXCEEDED, "",
       generate([](GR&) {}, nullptr, {.timeout = std::chrono::milliseconds(-1)})},
      // Authentication (the server started with KVC_AUTH_TOKENS=secret).
      {"auth: no token", StatusCode::UNAUTHENTICATED, "", compress([](CR&) {}, &a)},
      {"auth: wrong token", StatusCode::UNAUTHENTICATED, "", compress([](CR&) {}, &a, {.bearer_token = "Secret"})},
      {"auth: token that extends the right one", StatusCode::UNAUTHENTICATED, "",
       compress([](CR&) {}, &a, {.bearer_token = "secret2"})},
      {"auth: cache role without token", StatusCode::UNAUTHENTICATED, "",
       [&] { return List(a, v1::ListCachesRequest()); }},
      {"auth: generate without token", StatusCode::UNAUTHENTICATED, "", generate([](GR&) {}, &a)},
      {"auth: basic scheme instead of bearer", StatusCode::UNAUTHENTICATED, "",
       [&] {
         grpc::ClientContext ctx;
         Configure(ctx, {});
         ctx.AddMetadata("authorization", "Basic secret");
         v1::ModelInfo out;
         return a.compressor->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &out);
       }},
      // Limits of the small server: --max-queue-tokens 600 --max-message-bytes 4 MiB.
      {"queue: one request larger than the whole queue", StatusCode::RESOURCE_EXHAUSTED, "",
       compress([](CR& r) { r.mutable_documents(0)->set_text(FillerText(900, 12)); }, &q)},
      {"queue: generate whose max_tokens exceed the queue", StatusCode::RESOURCE_EXHAUSTED, "",
       [&] {
         GR r = GoodGenerate(small_good.cache_id());
         r.mutable_sampling()->set_max_tokens(1000);
         return GenerateStatus(q, r);
       }},
      {"queue: a request past the room left in the queue", StatusCode::RESOURCE_EXHAUSTED, "",
       [&] {
         // One compression holds the device (at a prefill chunk) and a second waits in the queue, so that
         // a third finds no room, however fast the machine. The holder's own queued point is taken first.
         const PauseControl& pause = small_->pause();
         const absl::Time until = absl::Now() + absl::Seconds(90);
         auto big = [](uint64_t seed) {
           CR r = GoodCompress();
           r.mutable_documents(0)->set_text(FillerText(330, seed));  // over half the 600-token queue
           (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "16";
           return r;
         };
         auto start = [&](CR r) {
           return std::make_unique<CallInFlight>(std::chrono::milliseconds(600000), [&q, r](grpc::ClientContext* c) {
             v1::CompressResponse out;
             return q.compressor->Compress(c, r, &out);
           });
         };
         const grpc::Status broken(StatusCode::INTERNAL, "test: a pause point was not reached");
         if (!pause.Arm(pause_point::kCompressPrefillChunk).ok() || !pause.Arm(pause_point::kCompressQueued).ok()) {
           return broken;
         }
         auto holder = start(GoodCompress(" holder"));
         if (!pause.WaitHeld(pause_point::kCompressPrefillChunk, until).ok() ||
             !pause.WaitHeld(pause_point::kCompressQueued, until).ok() ||
             !pause.Arm(pause_point::kCompressQueued).ok() || !pause.Release(pause_point::kCompressQueued).ok()) {
           return broken;
         }
         auto waiting = start(big(301));
         if (!pause.WaitHeld(pause_point::kCompressQueued, until).ok()) return broken;
         (void)pause.Release(pause_point::kCompressQueued);
         const grpc::Status refused = Compress(q, big(302));
         (void)pause.Release(pause_point::kCompressPrefillChunk);
         const grpc::Status held_status = holder->Wait(), waiting_status = waiting->Wait();
         if (!held_status.ok() || !waiting_status.ok()) {
           return grpc::Status(StatusCode::INTERNAL, absl::StrCat("test: the admitted calls failed: ",
                                                                  held_status.error_message(), " / ",
                                                                  waiting_status.error_message()));
         }
         return refused;
       }},
      {"message over --max-message-bytes", StatusCode::RESOURCE_EXHAUSTED, "",
       compress([](CR& r) { r.mutable_documents(0)->set_text(std::string(5 << 20, 'a')); }, &q)},
  };

  ASSERT_GE(rows.size(), 40u);
  int failures = 0;
  for (const Row& row : rows) {
    const absl::Time start = absl::Now();
    grpc::Status status = row.call();
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    const bool code_ok = status.error_code() == row.code;
    const bool field_ok = row.field.empty() || absl::StrContains(status.error_message(), row.field);
    if (!code_ok || !field_ok) ++failures;
    EXPECT_EQ(status.error_code(), row.code) << row.name << ": " << status.error_message();
    EXPECT_TRUE(field_ok) << row.name << ": the message does not name '" << row.field
                          << "': " << status.error_message();
    std::printf("%-58s %-20s %6.3fs  %s\n", row.name.c_str(),
                absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())).c_str(), seconds,
                status.error_message().substr(0, 110).c_str());
  }
  std::printf("bad-input table: %zu rows, %d mismatched\n", rows.size(), failures);
  RecordProperty("bad_input_rows", static_cast<int>(rows.size()));

  // Nothing of a rejected Put was stored.
  for (const std::string& id : put_ids) {
    EXPECT_EQ(Stat(m, id).error_code(), StatusCode::NOT_FOUND) << "a rejected Put stored " << id;
  }
  // Every server still answers good requests.
  for (ServerProcess* p : {main_, auth_, small_}) EXPECT_TRUE(p->Running()) << p->Log();
  v1::CompressResponse after;
  grpc::Status s = Compress(m, GoodCompress(" after the table"), {}, &after);
  ASSERT_TRUE(s.ok()) << s.error_message();
  GenerateResult g = Generate(*m.generator, GoodGenerate(after.cache_id()));
  EXPECT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.usage_messages, 1);
  v1::CompressResponse auth_good;
  s = Compress(a, GoodCompress(), {.bearer_token = kToken}, &auth_good);
  EXPECT_TRUE(s.ok()) << s.error_message();
  s = GenerateStatus(a, GoodGenerate(auth_good.cache_id()), {.bearer_token = kToken});
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(Compress(q, GoodCompress(" small after")).ok());
  EXPECT_TRUE(main_->WaitServing("", absl::Seconds(5)).ok());

}

}  // namespace
}  // namespace kvc::testing
