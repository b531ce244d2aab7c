// Client-side helpers for the end-to-end tests of kvc-server: the generated stubs of every service on one
// channel, whole-stream calls (Generate, Get, Put) collected into plain structs, raw calls by method name
// (for bytes the generated stubs cannot produce, and for methods that do not exist), and the server
// reflection service's list of services.
//
// Thread safety: a KvcStubs may be used from any number of threads (gRPC stubs are thread-safe); the free
// functions keep no state.
#ifndef KVC_TESTS_SUPPORT_KVC_TEST_CLIENT_H_
#define KVC_TESTS_SUPPORT_KVC_TEST_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/kvc/v1/cache.grpc.pb.h"
#include "proto/kvc/v1/compressor.grpc.pb.h"
#include "proto/kvc/v1/generator.grpc.pb.h"

namespace kvc::testing {

struct KvcStubs {
  explicit KvcStubs(std::shared_ptr<grpc::Channel> channel);

  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<kvc::v1::Compressor::Stub> compressor;
  std::unique_ptr<kvc::v1::CacheService::Stub> cache;
  std::unique_ptr<kvc::v1::Generator::Stub> generator;
  std::unique_ptr<grpc::health::v1::Health::Stub> health;
};

// How to set up a call: a deadline from now, a bearer token, a request id.
struct CallOptions {
  std::chrono::milliseconds timeout{60000};
  std::string bearer_token;  // empty: no authorization metadata
  std::string request_id;    // empty: none sent
};

// Applies `options` to a fresh context.
void Configure(grpc::ClientContext& ctx, const CallOptions& options);

// One Generate stream, read to its end.
struct GenerateResult {
  grpc::Status status;
  std::vector<kvc::v1::TextDelta> deltas;
  int usage_messages = 0;
  bool usage_last = false;  // the usage message was the last one read
  kvc::v1::Usage usage;
  std::string text;         // the deltas' text, concatenated
  int64_t token_count = 0;  // the deltas' token ids, counted
};
GenerateResult Generate(kvc::v1::Generator::Stub& stub, const kvc::v1::GenerateRequest& request,
                        const CallOptions& options = {});
// The same on a context the caller set up (and may cancel from another thread).
GenerateResult Generate(kvc::v1::Generator::Stub& stub, grpc::ClientContext* ctx,
                        const kvc::v1::GenerateRequest& request);

// One Get stream, read to its end.
struct GetResult {
  grpc::Status status;
  int header_messages = 0;
  bool header_first = false;
  kvc::v1::CacheHeader header;
  std::vector<size_t> chunk_sizes;  // data chunks, in order
  std::string value;                // the data chunks, concatenated
};
GetResult GetCache(kvc::v1::CacheService::Stub& stub, const kvc::v1::GetCacheRequest& request,
                   const CallOptions& options = {});

// Sends `chunks` as one Put stream (any sequence, valid or not) and returns the status.
grpc::Status PutChunks(kvc::v1::CacheService::Stub& stub, const std::vector<kvc::v1::CacheChunk>& chunks,
                       kvc::v1::PutCacheResponse* response, const CallOptions& options = {});

// The chunks of a well-formed Put of `value` under `cache_id`: a header with its length and SHA-256, then
// data chunks of at most `chunk_bytes`.
std::vector<kvc::v1::CacheChunk> PutStream(const std::string& cache_id, const std::string& value,
                                           size_t chunk_bytes = 1 << 20);

// The 32 raw bytes of SHA-256(`data`).
std::string Sha256Raw(const std::string& data);

// A unary call of `method` ("/pkg.Service/Method") with `request` as raw serialized bytes.
grpc::Status RawUnaryCall(grpc::Channel& channel, const std::string& method, const std::string& request,
                          std::string* response, const CallOptions& options = {});

// The services the server lists through grpc.reflection.v1alpha.ServerReflection.
absl::StatusOr<std::vector<std::string>> ReflectionServices(grpc::Channel& channel,
                                                            const CallOptions& options = {});

// `words` words drawn (seeded) from the sentences the tiny_chat tokenizer was trained on, so that each
// encodes to one or two tokens.
std::string FillerText(int words, uint64_t seed);

}  // namespace kvc::testing

#endif  // KVC_TESTS_SUPPORT_KVC_TEST_CLIENT_H_
