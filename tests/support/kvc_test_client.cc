#include "tests/support/kvc_test_client.h"

#include <future>
#include <random>

#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/impl/codegen/sync_stream.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "compressor/util/sha256.h"

namespace kvc::testing {
namespace {

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// Protobuf wire format by hand for the reflection messages, whose generated code Debian does not ship.
std::string LengthDelimited(int field, const std::string& payload) {
  std::string out;
  uint32_t tag = static_cast<uint32_t>(field) << 3 | 2;
  auto varint = [&out](uint64_t v) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  };
  varint(tag);
  varint(payload.size());
  out += payload;
  return out;
}

}  // namespace

KvcStubs::KvcStubs(std::shared_ptr<grpc::Channel> c)
    : channel(std::move(c)),
      compressor(kvc::v1::Compressor::NewStub(channel)),
      cache(kvc::v1::CacheService::NewStub(channel)),
      generator(kvc::v1::Generator::NewStub(channel)),
      health(grpc::health::v1::Health::NewStub(channel)) {}

void Configure(grpc::ClientContext& ctx, const CallOptions& options) {
  ctx.set_deadline(std::chrono::system_clock::now() + options.timeout);
  if (!options.bearer_token.empty()) ctx.AddMetadata("authorization", "Bearer " + options.bearer_token);
  if (!options.request_id.empty()) ctx.AddMetadata("x-request-id", options.request_id);
}

GenerateResult Generate(kvc::v1::Generator::Stub& stub, const kvc::v1::GenerateRequest& request,
                        const CallOptions& options) {
  grpc::ClientContext ctx;
  Configure(ctx, options);
  return Generate(stub, &ctx, request);
}

GenerateResult Generate(kvc::v1::Generator::Stub& stub, grpc::ClientContext* ctx,
                        const kvc::v1::GenerateRequest& request) {
  GenerateResult out;
  std::unique_ptr<grpc::ClientReader<kvc::v1::GenerateResponse>> reader = stub.Generate(ctx, request);
  kvc::v1::GenerateResponse response;
  while (reader->Read(&response)) {
    out.usage_last = false;
    if (response.has_delta()) {
      out.text += response.delta().text();
      out.token_count += response.delta().token_ids_size();
      out.deltas.push_back(response.delta());
    } else if (response.has_usage()) {
      ++out.usage_messages;
      out.usage = response.usage();
      out.usage_last = true;
    }
  }
  out.status = reader->Finish();
  return out;
}

GetResult GetCache(kvc::v1::CacheService::Stub& stub, const kvc::v1::GetCacheRequest& request,
                   const CallOptions& options) {
  GetResult out;
  grpc::ClientContext ctx;
  Configure(ctx, options);
  std::unique_ptr<grpc::ClientReader<kvc::v1::CacheChunk>> reader = stub.Get(&ctx, request);
  kvc::v1::CacheChunk chunk;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (chunk.has_header()) {
      if (first) out.header_first = true;
      ++out.header_messages;
      out.header = chunk.header();
    } else {
      out.chunk_sizes.push_back(chunk.data().size());
      out.value += chunk.data();
    }
    first = false;
  }
  out.status = reader->Finish();
  return out;
}

grpc::Status PutChunks(kvc::v1::CacheService::Stub& stub, const std::vector<kvc::v1::CacheChunk>& chunks,
                       kvc::v1::PutCacheResponse* response, const CallOptions& options) {
  grpc::ClientContext ctx;
  Configure(ctx, options);
  kvc::v1::PutCacheResponse ignored;
  std::unique_ptr<grpc::ClientWriter<kvc::v1::CacheChunk>> writer =
      stub.Put(&ctx, response != nullptr ? response : &ignored);
  for (const kvc::v1::CacheChunk& c : chunks) {
    if (!writer->Write(c)) break;  // the server already finished (e.g. a rejected header)
  }
  writer->WritesDone();
  return writer->Finish();
}

std::vector<kvc::v1::CacheChunk> PutStream(const std::string& cache_id, const std::string& value,
                                           size_t chunk_bytes) {
  std::vector<kvc::v1::CacheChunk> chunks(1);
  kvc::v1::CacheHeader* h = chunks[0].mutable_header();
  h->set_cache_id(cache_id);
  h->set_total_bytes(static_cast<int64_t>(value.size()));
  h->set_sha256(Sha256Raw(value));
  for (size_t off = 0; off < value.size(); off += chunk_bytes) {
    chunks.emplace_back().set_data(value.substr(off, chunk_bytes));
  }
  return chunks;
}

std::string Sha256Raw(const std::string& data) {
  Sha256 h;
  h.Update(data);
  const std::array<uint8_t, 32> d = h.Final();
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

grpc::Status RawUnaryCall(grpc::Channel& channel, const std::string& method, const std::string& request,
                          std::string* response, const CallOptions& options) {
  grpc::GenericStub stub(std::shared_ptr<grpc::ChannelInterface>(&channel, [](grpc::ChannelInterface*) {}));
  grpc::ClientContext ctx;
  Configure(ctx, options);
  const grpc::ByteBuffer in = ToByteBuffer(request);
  grpc::ByteBuffer out;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &in, &out,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status status = done.get_future().get();
  if (response != nullptr) *response = status.ok() ? FromByteBuffer(out) : "";
  return status;
}

absl::StatusOr<std::vector<std::string>> ReflectionServices(grpc::Channel& channel, const CallOptions& options) {
  grpc::ClientContext ctx;
  Configure(ctx, options);
  const grpc::internal::RpcMethod method("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                         grpc::internal::RpcMethod::BIDI_STREAMING);
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(&channel, method, &ctx));
  // ServerReflectionRequest { string list_services = 7; }
  if (!stream->Write(ToByteBuffer(LengthDelimited(7, "*")))) {
    return absl::UnavailableError("reflection: the request could not be sent");
  }
  stream->WritesDone();
  std::vector<std::string> names;
  grpc::ByteBuffer buffer;
  bool answered = false;
  while (stream->Read(&buffer)) {
    // ServerReflectionResponse { ListServiceResponse list_services_response = 6; ErrorResponse error = 7 }
    // ListServiceResponse { repeated ServiceResponse service = 1; }  ServiceResponse { string name = 1; }
    google::protobuf::UnknownFieldSet response;
    if (!response.ParseFromString(FromByteBuffer(buffer))) return absl::InternalError("reflection: bad response");
    for (int i = 0; i < response.field_count(); ++i) {
      const auto& f = response.field(i);
      if (f.number() == 7) return absl::InternalError("reflection: the server answered with an error");
      if (f.number() != 6 || f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
      answered = true;
      google::protobuf::UnknownFieldSet list;
      if (!list.ParseFromString(f.length_delimited())) return absl::InternalError("reflection: bad list");
      for (int j = 0; j < list.field_count(); ++j) {
        if (list.field(j).number() != 1) continue;
        google::protobuf::UnknownFieldSet service;
        if (!service.ParseFromString(list.field(j).length_delimited())) continue;
        for (int k = 0; k < service.field_count(); ++k) {
          if (service.field(k).number() == 1) names.push_back(service.field(k).length_delimited());
        }
      }
    }
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("reflection: ", status.error_message()));
  }
  if (!answered) return absl::InternalError("reflection: no list_services_response");
  return names;
}

std::string FillerText(int words, uint64_t seed) {
  static constexpr const char* kSentences[] = {
      "The report was written by the finance team in March and reviewed by the board in April.",
      "Our cache stores compressed keys and values so that a generator can answer without reading the documents.",
      "A retriever finds the documents that are most likely to hold the answer to a question.",
      "The river flows through the old town, past the market, the library and the railway station.",
      "She planted tomatoes, beans and sunflowers in the garden behind the house.",
      "The meeting starts at nine o'clock on Monday morning in the second floor conference room.",
      "Water boils at one hundred degrees Celsius at sea level.",
      "The museum opened in 1891 and holds more than 20,000 paintings, maps and letters.",
      "He asked who wrote the letter, when it was sent, and why it never arrived.",
      "Every document is split into chunks, and each chunk is scored against the query.",
      "The quick brown fox jumps over the lazy dog.",
  };
  std::vector<std::string> vocabulary;
  for (const char* s : kSentences) {
    for (absl::string_view w : absl::StrSplit(s, ' ')) vocabulary.emplace_back(w);
  }
  std::mt19937_64 rng(seed);
  std::string out;
  for (int i = 0; i < words; ++i) {
    if (i > 0) out.push_back(' ');
    out += vocabulary[rng() % vocabulary.size()];
  }
  return out;
}

}  // namespace kvc::testing
