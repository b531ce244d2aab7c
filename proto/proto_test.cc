// Checks the generated kvc.v1 code: every request message survives a serialize/parse round trip with its
// fields intact, and each service offers exactly the RPCs of DESIGN §7 with the right streaming shape.
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "proto/kvc/v1/cache.grpc.pb.h"
#include "proto/kvc/v1/cache.pb.h"
#include "proto/kvc/v1/common.pb.h"
#include "proto/kvc/v1/compressor.grpc.pb.h"
#include "proto/kvc/v1/compressor.pb.h"
#include "proto/kvc/v1/generator.grpc.pb.h"
#include "proto/kvc/v1/generator.pb.h"

namespace kvc::v1 {
namespace {

using google::protobuf::Message;
using google::protobuf::util::MessageDifferencer;

// Serializes `in`, parses the bytes into a fresh message of the same type and expects equality.
void ExpectRoundTrip(const Message& in) {
  SCOPED_TRACE(in.GetTypeName());
  std::string bytes;
  ASSERT_TRUE(in.SerializeToString(&bytes));
  EXPECT_FALSE(bytes.empty());
  std::unique_ptr<Message> out(in.New());
  ASSERT_TRUE(out->ParseFromString(bytes));
  EXPECT_TRUE(MessageDifferencer::Equals(in, *out)) << in.DebugString() << "\nvs\n" << out->DebugString();
}

CompressionSpec FinchSpec() {
  CompressionSpec spec;
  spec.set_method("finch");
  spec.set_ratio(8.0);
  (*spec.mutable_options())["chunk_tokens"] = "512";
  (*spec.mutable_options())["granularity"] = "layer";
  return spec;
}

TEST(ProtoTest, CompressRequestRoundTrips) {
  CompressRequest req;
  req.add_documents()->set_text("Paris is the capital of France.");
  Document* doc = req.add_documents();
  doc->mutable_token_ids()->add_ids(1);
  doc->mutable_token_ids()->add_ids(49151);
  doc->set_id("doc-2");
  req.set_query("What is the capital of France?");
  req.set_system_prompt("");
  *req.mutable_spec() = FinchSpec();
  req.set_model("SmolLM2-135M-Instruct");
  req.set_cache_dtype(CACHE_DTYPE_BF16);
  req.set_cache_codec(CACHE_CODEC_ZSTD);
  ExpectRoundTrip(req);

  // Presence survives: an explicitly empty system prompt differs from an unset one.
  std::string bytes;
  ASSERT_TRUE(req.SerializeToString(&bytes));
  CompressRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_TRUE(parsed.has_system_prompt());
  EXPECT_EQ(parsed.documents(0).content_case(), Document::kText);
  EXPECT_EQ(parsed.documents(1).content_case(), Document::kTokenIds);
  EXPECT_FALSE(parsed.documents(0).has_id());
  EXPECT_EQ(parsed.spec().budget_case(), CompressionSpec::kRatio);
  EXPECT_EQ(parsed.question_case(), CompressRequest::kQuery);

  CompressRequest by_reference;
  by_reference.add_document_cache_ids(std::string(64, 'a'));
  by_reference.mutable_suffix_ids()->add_ids(42);
  by_reference.mutable_spec()->set_method("snapkv");
  by_reference.mutable_spec()->set_target_tokens(256);
  ExpectRoundTrip(by_reference);
}

TEST(ProtoTest, PrecomputeRequestRoundTrips) {
  PrecomputeRequest req;
  req.add_documents()->set_text("A document.");
  req.set_mode(PRECOMPUTE_MODE_FULL);
  req.set_system_prompt("Be brief.");
  req.set_cache_dtype(CACHE_DTYPE_F32);
  ExpectRoundTrip(req);

  req.set_mode(PRECOMPUTE_MODE_QUERY_AGNOSTIC);
  req.mutable_spec()->set_method("knorm");
  req.mutable_spec()->set_ratio(4);
  ExpectRoundTrip(req);
}

TEST(ProtoTest, GetModelInfoRequestAndModelInfoRoundTrip) {
  GetModelInfoRequest req;
  std::string bytes;
  ASSERT_TRUE(req.SerializeToString(&bytes));
  EXPECT_TRUE(bytes.empty());  // no fields
  ASSERT_TRUE(GetModelInfoRequest().ParseFromString(bytes));

  ModelInfo info;
  info.set_name("SmolLM2-135M-Instruct");
  info.set_fingerprint(std::string(64, 'f'));
  info.set_num_layers(30);
  info.set_num_kv_heads(3);
  MethodInfo* finch = info.add_methods();
  finch->set_name("finch");
  finch->set_query_aware(true);
  finch->add_options()->set_name("chunk_tokens");
  info.mutable_limits()->set_max_context_tokens(131072);
  ExpectRoundTrip(info);
}

TEST(ProtoTest, CacheRequestsRoundTrip) {
  const std::string id(64, '0');
  GetCacheRequest get;
  get.set_cache_id(id);
  get.set_chunk_bytes(1 << 20);
  ExpectRoundTrip(get);

  CacheChunk header;
  header.mutable_header()->set_cache_id(id);
  header.mutable_header()->set_total_bytes(12345);
  header.mutable_header()->set_sha256(std::string(32, '\xab'));
  header.mutable_header()->mutable_info()->set_tokens_in(1000);
  ExpectRoundTrip(header);
  CacheChunk data;
  data.set_data(std::string(1 << 20, '\0'));
  ExpectRoundTrip(data);

  StatCacheRequest stat;
  stat.set_cache_id(id);
  stat.set_include_info(true);
  ExpectRoundTrip(stat);

  DeleteCacheRequest del;
  del.set_cache_id(id);
  ExpectRoundTrip(del);

  ListCachesRequest list;
  list.set_prefix("ab");
  list.set_page_size(10);
  list.set_page_token("opaque");
  ExpectRoundTrip(list);
}

TEST(ProtoTest, GenerateRequestRoundTrips) {
  GenerateRequest req;
  req.add_cache_ids(std::string(64, '1'));
  req.add_cache_ids(std::string(64, '2'));
  req.set_query("Who?");
  SamplingParams* s = req.mutable_sampling();
  s->set_temperature(0.7);
  s->set_top_k(40);
  s->set_top_p(0.9);
  s->set_seed(7);
  s->set_max_tokens(16);
  s->add_stop("\n");
  s->set_stop_on_eos(false);
  ExpectRoundTrip(req);

  GenerateResponse delta;
  delta.mutable_delta()->set_text("Paris");
  delta.mutable_delta()->add_token_ids(123);
  ExpectRoundTrip(delta);
  GenerateResponse usage;
  usage.mutable_usage()->set_finish_reason(FINISH_REASON_EOS);
  usage.mutable_usage()->set_generated_tokens(3);
  ExpectRoundTrip(usage);
}

struct Rpc {
  std::string name;
  bool client_streaming;
  bool server_streaming;
  bool operator==(const Rpc&) const = default;
};

std::vector<Rpc> RpcsOf(const std::string& service_full_name) {
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_full_name);
  EXPECT_NE(service, nullptr) << service_full_name;
  std::vector<Rpc> rpcs;
  if (service == nullptr) return rpcs;
  for (int i = 0; i < service->method_count(); ++i) {
    const google::protobuf::MethodDescriptor* m = service->method(i);
    rpcs.push_back({m->name(), m->client_streaming(), m->server_streaming()});
  }
  return rpcs;
}

std::string Describe(const std::vector<Rpc>& rpcs) {
  std::string s;
  for (const Rpc& r : rpcs) {
    s += r.name + (r.client_streaming ? "(stream)" : "()") + (r.server_streaming ? "->stream " : "-> ");
  }
  return s;
}

TEST(ProtoTest, CompressorServiceHasExactlyItsRpcs) {
  EXPECT_EQ(std::string(Compressor::service_full_name()), "kvc.v1.Compressor");
  std::vector<Rpc> want = {{"Compress", false, false}, {"Precompute", false, false}, {"GetModelInfo", false, false}};
  std::vector<Rpc> got = RpcsOf(Compressor::service_full_name());
  EXPECT_EQ(got, want) << Describe(got);
}

TEST(ProtoTest, CacheServiceHasExactlyItsRpcs) {
  EXPECT_EQ(std::string(CacheService::service_full_name()), "kvc.v1.CacheService");
  std::vector<Rpc> want = {{"Get", false, true},
                           {"Put", true, false},
                           {"Stat", false, false},
                           {"Delete", false, false},
                           {"List", false, false}};
  std::vector<Rpc> got = RpcsOf(CacheService::service_full_name());
  EXPECT_EQ(got, want) << Describe(got);
}

TEST(ProtoTest, GeneratorServiceHasExactlyItsRpcs) {
  EXPECT_EQ(std::string(Generator::service_full_name()), "kvc.v1.Generator");
  std::vector<Rpc> want = {{"Generate", false, true}};
  std::vector<Rpc> got = RpcsOf(Generator::service_full_name());
  EXPECT_EQ(got, want) << Describe(got);
}

TEST(ProtoTest, RpcMessageTypes) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  const std::vector<std::tuple<std::string, std::string, std::string>> want = {
      {"kvc.v1.Compressor.Compress", "kvc.v1.CompressRequest", "kvc.v1.CompressResponse"},
      {"kvc.v1.Compressor.Precompute", "kvc.v1.PrecomputeRequest", "kvc.v1.PrecomputeResponse"},
      {"kvc.v1.Compressor.GetModelInfo", "kvc.v1.GetModelInfoRequest", "kvc.v1.ModelInfo"},
      {"kvc.v1.CacheService.Get", "kvc.v1.GetCacheRequest", "kvc.v1.CacheChunk"},
      {"kvc.v1.CacheService.Put", "kvc.v1.CacheChunk", "kvc.v1.PutCacheResponse"},
      {"kvc.v1.CacheService.Stat", "kvc.v1.StatCacheRequest", "kvc.v1.StatCacheResponse"},
      {"kvc.v1.CacheService.Delete", "kvc.v1.DeleteCacheRequest", "kvc.v1.DeleteCacheResponse"},
      {"kvc.v1.CacheService.List", "kvc.v1.ListCachesRequest", "kvc.v1.ListCachesResponse"},
      {"kvc.v1.Generator.Generate", "kvc.v1.GenerateRequest", "kvc.v1.GenerateResponse"},
  };
  for (const auto& [method, input, output] : want) {
    const google::protobuf::MethodDescriptor* m = pool->FindMethodByName(method);
    ASSERT_NE(m, nullptr) << method;
    EXPECT_EQ(m->input_type()->full_name(), input) << method;
    EXPECT_EQ(m->output_type()->full_name(), output) << method;
  }
}

// Fields whose default is not the proto3 zero value carry presence, so the server can tell "unset" (the
// documented default) from an explicit zero or empty value.
TEST(ProtoTest, FieldPresenceWhereDefaultsAreNotZero) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  const std::vector<std::string> optional_fields = {
      "kvc.v1.SamplingParams.top_p",          "kvc.v1.SamplingParams.max_tokens",
      "kvc.v1.SamplingParams.stop_on_eos",    "kvc.v1.CompressRequest.system_prompt",
      "kvc.v1.CompressRequest.model",         "kvc.v1.PrecomputeRequest.system_prompt",
      "kvc.v1.GenerateRequest.model",         "kvc.v1.Document.id",
      "kvc.v1.GetCacheRequest.chunk_bytes",
  };
  for (const std::string& name : optional_fields) {
    const google::protobuf::FieldDescriptor* f = pool->FindFieldByName(name);
    ASSERT_NE(f, nullptr) << name;
    EXPECT_TRUE(f->has_presence()) << name;
  }
}

}  // namespace
}  // namespace kvc::v1
