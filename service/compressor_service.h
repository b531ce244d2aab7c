// CompressorServiceImpl: the `compress` role, kvc.v1.Compressor (proto/kvc/v1/compressor.proto is the
// contract). It turns documents and a query into a compressed cache in the store.
//
// A Compress or Precompute call goes through three kinds of threads, never blocking a gRPC thread on
// tokenization, store I/O or model work:
//   1. the gRPC thread checks the request (cheap checks only: model, counts, document shapes, token id
//      ranges, the spec and its options, the storage choice);
//   2. the service's Executor tokenizes, applies the length limits, computes the cache id and looks it up
//      in the store: a stored id is answered from its header with no model work (cache_hit). It also loads
//      the referenced document_cache_ids;
//   3. a Scheduler job (cost: the tokens to prefill) composes and compresses; the Executor then serializes
//      the result and stores it (CacheBuilder).
// Cancellation and deadlines stop a call in whatever phase they find it: after tokenizing, while it is
// queued, between prefill chunks, after the selection, after serializing and around the store write
// (CacheBuilder); the call ends as CANCELLED or DEADLINE_EXCEEDED and stores no partial cache. Precompute
// checks every document before any work, then makes one cache per document in order.
//
// Ownership: borrows the runtime, the scheduler, the store and the metrics (nullable), which must outlive
// the service. Owns its executor.
// Lifetime: shut the grpc::Server down before destroying the service; the destructor then waits for the
// executor's queued work.
// Thread safety: gRPC calls the methods from any number of threads at once; calls share only thread-safe
// objects (store, scheduler, executor, metrics, the immutable runtime).
#ifndef KVC_SERVICE_COMPRESSOR_SERVICE_H_
#define KVC_SERVICE_COMPRESSOR_SERVICE_H_

#include <memory>
#include <string>

#include <grpcpp/support/server_callback.h>

#include "absl/status/statusor.h"
#include "proto/kvc/v1/compressor.grpc.pb.h"
#include "service/cache_builder.h"
#include "service/compress_request.h"
#include "service/executor.h"
#include "service/metrics.h"
#include "service/model_runtime.h"
#include "service/pause_points.h"
#include "service/scheduler.h"
#include "service/store/cache_store.h"

namespace kvc {

struct CompressorServiceOptions {
  // Enforced on requests and reported in ModelInfo.limits (max_message_bytes and max_queue_tokens are
  // only reported: the server and the scheduler apply them).
  CompressorLimits limits;
  // The kvc_store_seconds backend label; empty: the store's own backend().
  std::string store_backend;
  // Threads and queue of the executor that tokenizes, hashes, serializes and calls the store.
  ExecutorOptions executor;
  // The test hook that holds calls at named points (pause_points.h); null in service. Borrowed.
  const PausePoints* pause_points = nullptr;
};

class CompressorServiceImpl final : public kvc::v1::Compressor::CallbackService {
 public:
  // INVALID_ARGUMENT for a null runtime, scheduler or store, or negative limits.
  static absl::StatusOr<std::unique_ptr<CompressorServiceImpl>> Create(const ModelRuntime* runtime,
                                                                       Scheduler* scheduler, CacheStore* store,
                                                                       ServiceMetrics* metrics,
                                                                       const CompressorServiceOptions& options);
  ~CompressorServiceImpl() override;

  grpc::ServerUnaryReactor* Compress(grpc::CallbackServerContext* ctx, const kvc::v1::CompressRequest* request,
                                     kvc::v1::CompressResponse* response) override;
  grpc::ServerUnaryReactor* Precompute(grpc::CallbackServerContext* ctx, const kvc::v1::PrecomputeRequest* request,
                                       kvc::v1::PrecomputeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const kvc::v1::GetModelInfoRequest* request,
                                         kvc::v1::ModelInfo* response) override;

 private:
  friend class CompressCall;
  friend class PrecomputeCall;

  CompressorServiceImpl(const ModelRuntime* runtime, CacheStore* store, ServiceMetrics* metrics,
                        const CompressorServiceOptions& options, std::unique_ptr<CacheBuilder> builder,
                        std::unique_ptr<Executor> executor, kvc::v1::ModelInfo model_info);

  const ModelRuntime* const runtime_;
  CacheStore* const store_;
  ServiceMetrics* const metrics_;
  const CompressorServiceOptions options_;
  // The builder's tasks run on the executor, so the executor (declared last) is drained and destroyed first.
  std::unique_ptr<CacheBuilder> builder_;
  std::unique_ptr<Executor> executor_;
  const kvc::v1::ModelInfo model_info_;
};

}  // namespace kvc

#endif  // KVC_SERVICE_COMPRESSOR_SERVICE_H_
