// CacheServiceImpl behind a real in-process grpc::Server on a loopback port, called through the generated
// stub: every RPC's happy path, a table of bad inputs with the codes proto/kvc/v1/cache.proto documents,
// and a client that cancels a Get midway.
#include "service/cache_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "compressor/format/kvc_header.h"
#include "compressor/format/kvc_writer.h"
#include "compressor/util/sha256.h"
#include "service/cache_info.h"
#include "service/executor.h"
#include "service/grpc_status.h"
#include "service/store/cache_store.h"

namespace kvc {
namespace {

using google::protobuf::util::MessageDifferencer;
using kvc::v1::CacheChunk;

constexpr int kMiB = 1 << 20;
constexpr int64_t kServerMaxValueBytes = int64_t{16} << 20;

std::string Sha256Raw(absl::string_view bytes) {
  Sha256 hash;
  hash.Update(bytes);
  const std::array<uint8_t, 32> digest = hash.Final();
  return std::string(reinterpret_cast<const char*>(digest.data()), digest.size());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The committed golden files of the format tests: small, valid values of every dtype and codec.
std::vector<std::string> CommittedKvcs() {
  const char* root = std::getenv("KVC_SOURCE_DIR");
  const std::string dir = absl::StrCat(root != nullptr ? root : ".", "/tests/testdata/kvc/");
  std::vector<std::string> values;
  for (const char* name : {"v1_f32_none.kvc", "v1_bf16_zstd.kvc", "v1_f16_none.kvc", "v1_int8_zstd.kvc"}) {
    values.push_back(ReadFile(dir + name));
  }
  return values;
}

// A valid f32 .kvc of about 5 MiB: 4 layers, 2 KV heads, head_dim 64, 1280 entries per head, so a Get
// streams several chunks.
constexpr uint32_t kBigLayers = 4, kBigHeads = 2, kBigHeadDim = 64, kBigLen = 1280;

std::string MakeLargeKvc() {
  KvcHeader h;
  h.num_layers = kBigLayers;
  h.kv_heads = kBigHeads;
  h.head_dim = kBigHeadDim;
  h.dtype = KvcDtype::kF32;
  h.codec = KvcCodec::kNone;
  h.keys_compacted = true;
  h.tokens_in = 5000;
  h.tokens_out = kBigLen;
  h.next_position = 5000;
  h.fingerprint = std::string(64, 'b');
  h.metadata = {{"model", "big-test-model"},
                {"rope", {{"type", "default"}, {"theta", 10000.0}}},
                {"spec", {{"method", "knorm"}, {"ratio", 4.0}, {"options", {{"granularity", "layer"}, {"seed", 7}}}}}};
  h.lengths.assign(kBigLayers * kBigHeads, kBigLen);
  std::vector<int32_t> positions;
  std::vector<std::string> keys(kBigLayers), values(kBigLayers);
  for (uint32_t l = 0; l < kBigLayers; ++l) {
    for (uint32_t hd = 0; hd < kBigHeads; ++hd) {
      for (uint32_t t = 0; t < kBigLen; ++t) {
        positions.push_back(static_cast<int32_t>(t * 3 + hd));
        for (uint32_t d = 0; d < kBigHeadDim; ++d) {
          const float k = static_cast<float>((l * 131 + hd * 17 + t * 7 + d) % 1000) / 1000.0f;
          const float v = -k;
          keys[l].append(reinterpret_cast<const char*>(&k), sizeof(k));
          values[l].append(reinterpret_cast<const char*>(&v), sizeof(v));
        }
      }
    }
  }
  std::vector<KvcLayerData> layers;
  for (uint32_t l = 0; l < kBigLayers; ++l) layers.push_back(KvcLayerData{keys[l], values[l], {}, {}});
  absl::StatusOr<std::string> bytes = SerializeKvc(h, positions, layers);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

const std::string& LargeKvc() {
  static const std::string* value = new std::string(MakeLargeKvc());
  return *value;
}

CacheChunk HeaderChunk(const std::string& id, int64_t total_bytes, const std::string& sha256) {
  CacheChunk c;
  c.mutable_header()->set_cache_id(id);
  c.mutable_header()->set_total_bytes(total_bytes);
  c.mutable_header()->set_sha256(sha256);
  return c;
}

CacheChunk DataChunk(absl::string_view bytes) {
  CacheChunk c;
  c.set_data(std::string(bytes));
  return c;
}

// A well-formed Put stream for `value`: its header, then data chunks of `chunk` bytes.
std::vector<CacheChunk> PutStream(const std::string& id, absl::string_view value, size_t chunk = kMiB) {
  std::vector<CacheChunk> stream = {HeaderChunk(id, static_cast<int64_t>(value.size()), Sha256Raw(value))};
  for (size_t off = 0; off < value.size(); off += chunk) stream.push_back(DataChunk(value.substr(off, chunk)));
  return stream;
}

struct PutResult {
  grpc::Status status;
  kvc::v1::PutCacheResponse response;
};

struct GetResult {
  grpc::Status status;
  std::vector<CacheChunk> messages;
  std::string data;  // the data chunks concatenated
};

std::chrono::system_clock::time_point Deadline() { return std::chrono::system_clock::now() + std::chrono::seconds(60); }

class CacheServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<CacheStore>> store = OpenCacheStore("memory://", {});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    CacheServiceOptions options;
    options.max_value_bytes = kServerMaxValueBytes;
    options.executor.threads = 2;
    absl::StatusOr<std::unique_ptr<CacheServiceImpl>> service = CacheServiceImpl::Create(store_.get(), options);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = std::move(*service);

    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    stub_ = kvc::v1::CacheService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
    server_.reset();
    service_.reset();
    store_.reset();
  }

  PutResult SendPut(const std::vector<CacheChunk>& stream) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    PutResult result;
    std::unique_ptr<grpc::ClientWriter<CacheChunk>> writer = stub_->Put(&ctx, &result.response);
    for (const CacheChunk& chunk : stream) {
      if (!writer->Write(chunk)) break;  // the server has already answered
    }
    writer->WritesDone();
    result.status = writer->Finish();
    return result;
  }

  PutResult Put(const std::string& value, size_t chunk = kMiB) {
    return SendPut(PutStream(Sha256Hex(value), value, chunk));
  }

  GetResult Get(const std::string& id, std::optional<int32_t> chunk_bytes = std::nullopt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    kvc::v1::GetCacheRequest request;
    request.set_cache_id(id);
    if (chunk_bytes) request.set_chunk_bytes(*chunk_bytes);
    GetResult result;
    std::unique_ptr<grpc::ClientReader<CacheChunk>> reader = stub_->Get(&ctx, request);
    CacheChunk chunk;
    while (reader->Read(&chunk)) {
      if (chunk.has_data()) result.data += chunk.data();
      result.messages.push_back(chunk);
    }
    result.status = reader->Finish();
    return result;
  }

  grpc::Status Stat(const std::string& id, bool include_info, kvc::v1::StatCacheResponse* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    kvc::v1::StatCacheRequest request;
    request.set_cache_id(id);
    request.set_include_info(include_info);
    return stub_->Stat(&ctx, request, response);
  }

  grpc::Status Delete(const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    kvc::v1::DeleteCacheRequest request;
    request.set_cache_id(id);
    kvc::v1::DeleteCacheResponse response;
    return stub_->Delete(&ctx, request, &response);
  }

  grpc::Status List(const std::string& prefix, int32_t page_size, const std::string& token,
                    kvc::v1::ListCachesResponse* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    kvc::v1::ListCachesRequest request;
    request.set_prefix(prefix);
    request.set_page_size(page_size);
    request.set_page_token(token);
    return stub_->List(&ctx, request, response);
  }

  // Checks a successful Get of `value`: one header first (id, length, digest), then non-empty data chunks
  // of at most `max_chunk` bytes that concatenate to `value`.
  void ExpectGetReturns(const GetResult& got, const std::string& value, size_t max_chunk) {
    ASSERT_TRUE(got.status.ok()) << got.status.error_code() << ": " << got.status.error_message();
    ASSERT_FALSE(got.messages.empty());
    ASSERT_TRUE(got.messages[0].has_header());
    const kvc::v1::CacheHeader& header = got.messages[0].header();
    EXPECT_EQ(header.cache_id(), Sha256Hex(value));
    EXPECT_EQ(header.total_bytes(), static_cast<int64_t>(value.size()));
    EXPECT_EQ(header.sha256(), Sha256Raw(value));
    EXPECT_EQ(header.info().cache_id(), Sha256Hex(value));
    EXPECT_EQ(header.info().bytes(), static_cast<int64_t>(value.size()));
    EXPECT_FALSE(header.info().has_timings());
    for (size_t i = 1; i < got.messages.size(); ++i) {
      ASSERT_TRUE(got.messages[i].has_data()) << "message " << i << " is not data";
      EXPECT_GE(got.messages[i].data().size(), 1u);
      EXPECT_LE(got.messages[i].data().size(), max_chunk);
    }
    EXPECT_EQ(got.data.size(), value.size());
    EXPECT_TRUE(got.data == value) << "streamed bytes differ from the value";
    EXPECT_EQ(Sha256Raw(got.data), header.sha256());
  }

  std::unique_ptr<CacheStore> store_;
  std::unique_ptr<CacheServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<kvc::v1::CacheService::Stub> stub_;
};

TEST_F(CacheServiceTest, PutThenGetRoundTripsCommittedFiles) {
  for (const std::string& value : CommittedKvcs()) {
    ASSERT_FALSE(value.empty()) << "missing tests/testdata/kvc file (is KVC_SOURCE_DIR set?)";
    PutResult put = Put(value);
    ASSERT_TRUE(put.status.ok()) << put.status.error_message();
    EXPECT_EQ(put.response.cache_id(), Sha256Hex(value));
    EXPECT_FALSE(put.response.replaced());
    EXPECT_EQ(put.response.info().bytes(), static_cast<int64_t>(value.size()));
    EXPECT_EQ(put.response.info().format_version(), "1.0");
    EXPECT_FALSE(put.response.info().spec().method().empty());

    GetResult got = Get(Sha256Hex(value));
    ExpectGetReturns(got, value, kMiB);
    EXPECT_TRUE(MessageDifferencer::Equals(got.messages[0].header().info(), put.response.info()));
  }
}

TEST_F(CacheServiceTest, LargeValueStreamsInRequestedChunks) {
  const std::string& value = LargeKvc();
  ASSERT_GT(value.size(), size_t{4} * kMiB);
  // An odd client chunk size: the server must not assume chunk boundaries.
  PutResult put = Put(value, 300001);
  ASSERT_TRUE(put.status.ok()) << put.status.error_message();

  GetResult whole = Get(Sha256Hex(value));
  ExpectGetReturns(whole, value, kMiB);
  EXPECT_EQ(whole.messages.size(), 1 + (value.size() + kMiB - 1) / kMiB);

  constexpr int32_t kSmall = 256 << 10;
  GetResult small = Get(Sha256Hex(value), kSmall);
  ExpectGetReturns(small, value, kSmall);
  EXPECT_EQ(small.messages.size(), 1 + (value.size() + kSmall - 1) / kSmall);

  GetResult zero = Get(Sha256Hex(value), 0);  // 0 means the default, 1 MiB
  ExpectGetReturns(zero, value, kMiB);

  const kvc::v1::CacheInfo& info = whole.messages[0].header().info();
  EXPECT_EQ(info.model(), "big-test-model");
  EXPECT_EQ(info.model_fingerprint(), std::string(64, 'b'));
  EXPECT_EQ(info.spec().method(), "knorm");
  EXPECT_EQ(info.spec().budget_case(), kvc::v1::CompressionSpec::kRatio);
  EXPECT_DOUBLE_EQ(info.spec().ratio(), 4.0);
  EXPECT_EQ(info.spec().options().at("granularity"), "layer");
  EXPECT_EQ(info.spec().options().at("seed"), "7");
  EXPECT_EQ(info.tokens_in(), 5000);
  EXPECT_EQ(info.tokens_out(), kBigLen);
  EXPECT_EQ(info.next_position(), 5000);
  EXPECT_EQ(info.layers(), static_cast<int32_t>(kBigLayers));
  EXPECT_EQ(info.kv_heads(), static_cast<int32_t>(kBigHeads));
  EXPECT_EQ(info.head_dim(), static_cast<int32_t>(kBigHeadDim));
  EXPECT_EQ(info.dtype(), kvc::v1::CACHE_DTYPE_F32);
  EXPECT_EQ(info.codec(), kvc::v1::CACHE_CODEC_NONE);
  EXPECT_EQ(info.format_version(), "1.0");
  EXPECT_TRUE(MessageDifferencer::Equals(info, put.response.info()));
}

TEST_F(CacheServiceTest, PutAgainReportsReplaced) {
  const std::string value = CommittedKvcs()[0];
  ASSERT_TRUE(Put(value).status.ok());
  PutResult again = Put(value);
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_TRUE(again.response.replaced());
}

TEST_F(CacheServiceTest, StatWithAndWithoutInfo) {
  const std::string value = CommittedKvcs()[1];
  const std::string id = Sha256Hex(value);
  PutResult put = Put(value);
  ASSERT_TRUE(put.status.ok()) << put.status.error_message();

  kvc::v1::StatCacheResponse bare;
  ASSERT_TRUE(Stat(id, false, &bare).ok());
  EXPECT_EQ(bare.entry().cache_id(), id);
  EXPECT_EQ(bare.entry().bytes(), static_cast<int64_t>(value.size()));
  EXPECT_GT(bare.entry().created().seconds(), 0);
  EXPECT_GE(bare.entry().last_access().seconds(), bare.entry().created().seconds());
  EXPECT_FALSE(bare.has_info());

  kvc::v1::StatCacheResponse full;
  ASSERT_TRUE(Stat(id, true, &full).ok());
  EXPECT_EQ(full.entry().bytes(), static_cast<int64_t>(value.size()));
  ASSERT_TRUE(full.has_info());
  EXPECT_TRUE(MessageDifferencer::Equals(full.info(), put.response.info()));
}

TEST_F(CacheServiceTest, ListPagesInIdOrder) {
  std::vector<std::string> ids;
  for (const std::string& value : CommittedKvcs()) {
    ASSERT_TRUE(Put(value).status.ok());
    ids.push_back(Sha256Hex(value));
  }
  ASSERT_TRUE(Put(LargeKvc()).status.ok());
  ids.push_back(Sha256Hex(LargeKvc()));
  std::sort(ids.begin(), ids.end());

  std::vector<std::string> listed;
  std::string token;
  int pages = 0;
  do {
    kvc::v1::ListCachesResponse page;
    grpc::Status status = List("", 2, token, &page);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_LE(page.entries_size(), 2);
    for (const kvc::v1::CacheEntry& e : page.entries()) {
      listed.push_back(e.cache_id());
      EXPECT_GT(e.bytes(), 0);
    }
    token = page.next_page_token();
    ASSERT_LT(++pages, 10) << "paging does not end";
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(listed, ids);

  kvc::v1::ListCachesResponse all;
  ASSERT_TRUE(List("", 0, "", &all).ok());
  EXPECT_EQ(all.entries_size(), 5);
  EXPECT_TRUE(all.next_page_token().empty());

  kvc::v1::ListCachesResponse one;
  ASSERT_TRUE(List(ids[2], 0, "", &one).ok());
  ASSERT_EQ(one.entries_size(), 1);
  EXPECT_EQ(one.entries(0).cache_id(), ids[2]);
}

TEST_F(CacheServiceTest, DeleteThenNotFound) {
  const std::string value = CommittedKvcs()[2];
  const std::string id = Sha256Hex(value);
  ASSERT_TRUE(Put(value).status.ok());
  grpc::Status deleted = Delete(id);
  ASSERT_TRUE(deleted.ok()) << deleted.error_message();
  EXPECT_EQ(Get(id).status.error_code(), grpc::StatusCode::NOT_FOUND);
  kvc::v1::StatCacheResponse stat;
  EXPECT_EQ(Stat(id, false, &stat).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Delete(id).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CacheServiceTest, BadInputsGetTheirDocumentedCodes) {
  const std::string good = CommittedKvcs()[0];
  const std::string good_id = Sha256Hex(good);
  ASSERT_TRUE(Put(good).status.ok());
  const std::string& big = LargeKvc();
  // Bad Puts all target this id; none of them may store anything under it.
  const std::string bad_id = Sha256Hex("never stored");
  const std::string unknown_id(64, 'e');
  const std::string upper_id(64, 'A');

  std::string flipped = big;
  flipped[flipped.size() / 2] ^= 0x01;  // inside a K/V section: only its xxhash64 notices
  const std::string not_kvc(4096, 'x');
  const std::string truncated = big.substr(0, big.size() - 100);

  auto put_code = [&](std::vector<CacheChunk> stream) { return SendPut(stream).status.error_code(); };
  auto stream_of = [&](absl::string_view value) { return PutStream(bad_id, value); };

  struct Case {
    std::string name;
    std::function<grpc::StatusCode()> run;
    grpc::StatusCode expected;
  };
  using C = grpc::StatusCode;
  std::vector<Case> cases = {
      {"get: short id", [&] { return Get("abc").status.error_code(); }, C::INVALID_ARGUMENT},
      {"get: uppercase id", [&] { return Get(upper_id).status.error_code(); }, C::INVALID_ARGUMENT},
      {"get: empty id", [&] { return Get("").status.error_code(); }, C::INVALID_ARGUMENT},
      {"get: unknown id", [&] { return Get(unknown_id).status.error_code(); }, C::NOT_FOUND},
      {"get: chunk_bytes 1 MiB + 1", [&] { return Get(good_id, kMiB + 1).status.error_code(); }, C::INVALID_ARGUMENT},
      {"get: chunk_bytes -1", [&] { return Get(good_id, -1).status.error_code(); }, C::INVALID_ARGUMENT},
      {"stat: short id", [&] { kvc::v1::StatCacheResponse r; return Stat("12", false, &r).error_code(); },
       C::INVALID_ARGUMENT},
      {"stat: id with a space", [&] { kvc::v1::StatCacheResponse r; return Stat(good_id.substr(1) + " ", true, &r).error_code(); },
       C::INVALID_ARGUMENT},
      {"stat: unknown id", [&] { kvc::v1::StatCacheResponse r; return Stat(unknown_id, true, &r).error_code(); },
       C::NOT_FOUND},
      {"delete: uppercase id", [&] { return Delete(upper_id).error_code(); }, C::INVALID_ARGUMENT},
      {"delete: unknown id", [&] { return Delete(unknown_id).error_code(); }, C::NOT_FOUND},
      {"list: negative page_size", [&] { kvc::v1::ListCachesResponse r; return List("", -1, "", &r).error_code(); },
       C::INVALID_ARGUMENT},
      {"list: non-hex prefix", [&] { kvc::v1::ListCachesResponse r; return List("xyz", 0, "", &r).error_code(); },
       C::INVALID_ARGUMENT},
      {"list: forged page_token", [&] { kvc::v1::ListCachesResponse r; return List("", 0, "page2", &r).error_code(); },
       C::INVALID_ARGUMENT},
      {"put: malformed id", [&] { return put_code(PutStream("not-an-id", good)); }, C::INVALID_ARGUMENT},
      {"put: empty stream", [&] { return put_code({}); }, C::INVALID_ARGUMENT},
      {"put: data before header",
       [&] {
         std::vector<CacheChunk> s = stream_of(good);
         std::swap(s[0], s[1]);
         return put_code(s);
       },
       C::INVALID_ARGUMENT},
      {"put: two headers",
       [&] {
         std::vector<CacheChunk> s = stream_of(good);
         s.insert(s.begin() + 1, s[0]);
         return put_code(s);
       },
       C::INVALID_ARGUMENT},
      {"put: header after data",
       [&] {
         std::vector<CacheChunk> s = stream_of(good);
         s.push_back(s[0]);
         return put_code(s);
       },
       C::INVALID_ARGUMENT},
      {"put: empty data chunk",
       [&] {
         std::vector<CacheChunk> s = stream_of(good);
         s.insert(s.begin() + 1, DataChunk(""));
         return put_code(s);
       },
       C::INVALID_ARGUMENT},
      {"put: chunk with neither header nor data",
       [&] {
         std::vector<CacheChunk> s = stream_of(good);
         s.insert(s.begin() + 1, CacheChunk());
         return put_code(s);
       },
       C::INVALID_ARGUMENT},
      {"put: chunk of 1 MiB + 1",
       [&] { return put_code(PutStream(bad_id, big, kMiB + 1)); }, C::INVALID_ARGUMENT},
      {"put: more data than total_bytes",
       [&] {
         std::vector<CacheChunk> s = stream_of(good);
         s.push_back(DataChunk("x"));
         return put_code(s);
       },
       C::INVALID_ARGUMENT},
      {"put: less data than total_bytes",
       [&] {
         std::vector<CacheChunk> s = stream_of(big);
         s.pop_back();
         return put_code(s);
       },
       C::DATA_LOSS},
      {"put: wrong sha256",
       [&] {
         std::vector<CacheChunk> s = stream_of(good);
         s[0].mutable_header()->set_sha256(Sha256Raw("something else"));
         return put_code(s);
       },
       C::DATA_LOSS},
      {"put: missing sha256",
       [&] {
         std::vector<CacheChunk> s = stream_of(good);
         s[0].mutable_header()->clear_sha256();
         return put_code(s);
       },
       C::INVALID_ARGUMENT},
      {"put: hex sha256 instead of raw",
       [&] {
         std::vector<CacheChunk> s = stream_of(good);
         s[0].mutable_header()->set_sha256(Sha256Hex(good));
         return put_code(s);
       },
       C::INVALID_ARGUMENT},
      {"put: total_bytes 0", [&] { return put_code({HeaderChunk(bad_id, 0, Sha256Raw(""))}); }, C::INVALID_ARGUMENT},
      {"put: negative total_bytes",
       [&] { return put_code({HeaderChunk(bad_id, -5, Sha256Raw("")), DataChunk("abc")}); }, C::INVALID_ARGUMENT},
      {"put: not a .kvc", [&] { return put_code(stream_of(not_kvc)); }, C::INVALID_ARGUMENT},
      {"put: .kvc with a flipped byte", [&] { return put_code(stream_of(flipped)); }, C::DATA_LOSS},
      {"put: truncated .kvc", [&] { return put_code(stream_of(truncated)); }, C::DATA_LOSS},
      {"put: total_bytes over the server limit",
       [&] {
         return put_code({HeaderChunk(bad_id, kServerMaxValueBytes + 1, Sha256Raw(good)), DataChunk(good)});
       },
       C::RESOURCE_EXHAUSTED},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(c.run(), c.expected);
  }

  kvc::v1::StatCacheResponse stat;
  EXPECT_EQ(Stat(bad_id, false, &stat).error_code(), grpc::StatusCode::NOT_FOUND) << "a bad Put stored a value";
  // The server still answers a good request, and the good value is untouched.
  ExpectGetReturns(Get(good_id), good, kMiB);
  PutResult put = Put(big);
  EXPECT_TRUE(put.status.ok()) << put.status.error_message();
}

TEST_F(CacheServiceTest, CancelledGetLeavesServerHealthy) {
  const std::string& value = LargeKvc();
  const std::string id = Sha256Hex(value);
  ASSERT_TRUE(Put(value).status.ok());
  for (int round = 0; round < 3; ++round) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    kvc::v1::GetCacheRequest request;
    request.set_cache_id(id);
    request.set_chunk_bytes(4096);  // about 1300 chunks: the server is mid-stream when the client cancels
    std::unique_ptr<grpc::ClientReader<CacheChunk>> reader = stub_->Get(&ctx, request);
    CacheChunk chunk;
    int read = 0;
    while (read < 4 && reader->Read(&chunk)) ++read;
    ASSERT_EQ(read, 4);
    ctx.TryCancel();
    int after = 0;
    while (reader->Read(&chunk)) ++after;
    EXPECT_LT(after, 1300) << "the stream ran to its end despite the cancel";
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  ExpectGetReturns(Get(id), value, kMiB);
}

TEST(ExecutorTest, FullQueueIsResourceExhaustedAndDestructionRunsQueuedTasks) {
  std::atomic<int> ran{0};
  absl::Notification release;
  absl::Notification started;
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Create({.threads = 1, .max_queued = 1});
    ASSERT_TRUE(executor.ok()) << executor.status();
    ASSERT_TRUE((*executor)->Submit([&] { started.Notify(); release.WaitForNotification(); ++ran; }).ok());
    started.WaitForNotification();  // the only thread is now busy
    ASSERT_TRUE((*executor)->Submit([&] { ++ran; }).ok());
    absl::Status full = (*executor)->Submit([&] { ++ran; });
    EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
    release.Notify();
  }
  EXPECT_EQ(ran.load(), 2);
  EXPECT_EQ(Executor::Create({.threads = 0}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrpcStatusTest, CodesAndMessagesMapBothWays) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), code == 0 ? "" : "msg");
    const grpc::Status g = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    if (code != 0) {
      EXPECT_EQ(g.error_message(), "msg");
    }
    EXPECT_EQ(FromGrpcStatus(g), status);
  }
  EXPECT_EQ(ToGrpcStatus(absl::DataLossError("x")).error_code(), grpc::StatusCode::DATA_LOSS);
}

TEST(CacheInfoTest, SpecFromJsonPrefersTargetTokensAndStringifiesOptions) {
  const kvc::v1::CompressionSpec spec = CompressionSpecFromJson(
      {{"method", "snapkv"}, {"target_tokens", 128}, {"options", {{"window", 64}, {"pooling", "max"}}}});
  EXPECT_EQ(spec.method(), "snapkv");
  EXPECT_EQ(spec.budget_case(), kvc::v1::CompressionSpec::kTargetTokens);
  EXPECT_EQ(spec.target_tokens(), 128);
  EXPECT_EQ(spec.options().at("window"), "64");
  EXPECT_EQ(spec.options().at("pooling"), "max");
  EXPECT_EQ(CompressionSpecFromJson(nlohmann::json::array()).method(), "");
}

}  // namespace
}  // namespace kvc
