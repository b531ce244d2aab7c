// KvcClient: the C++ client of a kvc server (proto/kvc/v1/*.proto and grpc.health.v1), one method per RPC.
//
//   ClientOptions options;
//   options.target = "kvc.example:50051";
//   KVC_ASSIGN_OR_RETURN(std::unique_ptr<KvcClient> client, KvcClient::Create(options));
//   KVC_ASSIGN_OR_RETURN(kvc::v1::CompressResponse compressed, client->Compress(request));
//
// Results: every method returns the server's status as an absl::Status with the same code and message
// (proto/kvc/v1/common.proto lists the codes), or a status of the client's own: DATA_LOSS when a fetched
// cache fails its length or SHA-256 check, INTERNAL when a stream breaks the protocol, DEADLINE_EXCEEDED
// when the deadline passes (on the client or the server).
//
// Deadlines cover the whole call, every retry included: CallOptions::timeout, else
// ClientOptions::default_deadline. Retries follow ClientOptions::retry (UNAVAILABLE only, exponential
// backoff with jitter, bounded attempts); a stream that has delivered a message is never retried.
//
// Ownership: the client owns its channel and stubs. It keeps no reference to requests or callbacks after a
// method returns.
// Thread safety: every method may be called from any number of threads at once on one client.
#ifndef KVC_CLIENT_CPP_KVC_CLIENT_H_
#define KVC_CLIENT_CPP_KVC_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "client/cpp/cache_transfer.h"
#include "client/cpp/client_options.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/kvc/v1/cache.grpc.pb.h"
#include "proto/kvc/v1/compressor.grpc.pb.h"
#include "proto/kvc/v1/generator.grpc.pb.h"

namespace kvc {

// grpc.health.v1's status of one service.
enum class ServingStatus { kUnknown, kServing, kNotServing, kServiceUnknown };

// "SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN": the protocol's names.
const char* ServingStatusName(ServingStatus status);

class KvcClient {
 public:
  // Called with each TextDelta of a Generate stream, in order, on the calling thread.
  using DeltaCallback = std::function<void(const kvc::v1::TextDelta&)>;
  // Called with each Usage of a Generate stream (one per question), in order, on the calling thread.
  using UsageCallback = std::function<void(const kvc::v1::Usage&)>;

  // Connects lazily: creation succeeds without a server, and the first call waits for the connection
  // (within its deadline). INVALID_ARGUMENT for options out of range (naming the field); NOT_FOUND or
  // PERMISSION_DENIED for a PEM file that cannot be read.
  static absl::StatusOr<std::unique_ptr<KvcClient>> Create(const ClientOptions& options);
  // The same over a channel the caller made (e.g. grpc::Server::InProcessChannel); the TLS and message
  // size fields of `options` are then unused.
  static absl::StatusOr<std::unique_ptr<KvcClient>> CreateWithChannel(std::shared_ptr<grpc::Channel> channel,
                                                                      const ClientOptions& options);

  KvcClient(const KvcClient&) = delete;
  KvcClient& operator=(const KvcClient&) = delete;

  // --- Compressor (compress role) ---
  absl::StatusOr<kvc::v1::CompressResponse> Compress(const kvc::v1::CompressRequest& request,
                                                     const CallOptions& call = {});
  absl::StatusOr<kvc::v1::PrecomputeResponse> Precompute(const kvc::v1::PrecomputeRequest& request,
                                                         const CallOptions& call = {});
  absl::StatusOr<kvc::v1::ModelInfo> GetModelInfo(const CallOptions& call = {});

  // --- Generator (generate role) ---
  // Streams the answer: `on_delta` gets every TextDelta, and the final Usage is returned. If the stream
  // fails after some deltas, those deltas stay valid and the error is returned (no retry). With
  // request.questions the Usage is the last question's; GenerateAnswers returns them all.
  absl::StatusOr<kvc::v1::Usage> Generate(const kvc::v1::GenerateRequest& request, const DeltaCallback& on_delta,
                                          const CallOptions& call = {});
  // The same for any request, several questions included: one Usage per question, in order, each also
  // passed to `on_usage` (may be null) as it arrives (TextDelta and Usage carry the question's index).
  // INTERNAL when the stream breaks that order.
  absl::StatusOr<std::vector<kvc::v1::Usage>> GenerateAnswers(const kvc::v1::GenerateRequest& request,
                                                              const DeltaCallback& on_delta,
                                                              const UsageCallback& on_usage,
                                                              const CallOptions& call = {});

  // --- CacheService (cache role) ---
  // The whole stored value, checked against the stream's header (length and SHA-256).
  absl::StatusOr<FetchedCache> GetCache(const std::string& cache_id, const CallOptions& call = {});
  // Stores `value` under `cache_id` (replacing any earlier value), streamed as a header and data chunks of
  // ClientOptions::put_chunk_bytes. The server checks the digest and the .kvc structure.
  absl::StatusOr<kvc::v1::PutCacheResponse> PutCache(const std::string& cache_id, absl::string_view value,
                                                     const CallOptions& call = {});
  absl::StatusOr<kvc::v1::StatCacheResponse> StatCache(const std::string& cache_id, bool include_info,
                                                       const CallOptions& call = {});
  // A retried Delete whose first attempt did reach the server answers NOT_FOUND.
  absl::Status DeleteCache(const std::string& cache_id, const CallOptions& call = {});
  // One page; pass response.next_page_token back in request.page_token for the next.
  absl::StatusOr<kvc::v1::ListCachesResponse> ListCaches(const kvc::v1::ListCachesRequest& request,
                                                         const CallOptions& call = {});

  // --- grpc.health.v1 ---
  // `service`: "kvc.v1.Compressor", "kvc.v1.CacheService", "kvc.v1.Generator", or "" for the whole
  // server. NOT_FOUND when the server does not serve it.
  absl::StatusOr<ServingStatus> Health(const std::string& service, const CallOptions& call = {});

  const ClientOptions& options() const { return options_; }

 private:
  // One try of a call on a fresh context. Sets *delivered once the server has sent a message of a stream,
  // after which a failure is final.
  using Attempt = std::function<absl::Status(grpc::ClientContext* context, bool* delivered)>;

  KvcClient(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);

  // Runs `attempt` until it succeeds, fails with a code that is not retried, has delivered data, runs
  // out of attempts, or the next wait would pass the deadline.
  absl::Status Call(const CallOptions& call, const Attempt& attempt);
  double UniformDraw();

  const ClientOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<kvc::v1::Compressor::Stub> compressor_;
  const std::unique_ptr<kvc::v1::Generator::Stub> generator_;
  const std::unique_ptr<kvc::v1::CacheService::Stub> cache_;
  const std::unique_ptr<grpc::health::v1::Health::Stub> health_;

  absl::Mutex jitter_mu_;
  absl::BitGen jitter_gen_ ABSL_GUARDED_BY(jitter_mu_);
};

}  // namespace kvc

#endif  // KVC_CLIENT_CPP_KVC_CLIENT_H_
