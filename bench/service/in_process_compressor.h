// InProcessCompressor: what kvc-server's Compress does once gRPC has decoded the request, run in the
// benchmark's own process with no gRPC at all, so that timing it next to a real round trip isolates the cost
// of gRPC (HTTP/2 over loopback, protobuf encoding, the callback reactor, the server's per-call interceptor).
//
// CompressorServiceImpl keeps its per-call steps private, so this class chains the same public building
// blocks it uses, in the same order and on the same kinds of threads: the request checks (ParseSpec,
// CheckDocument, ParseCacheDtype/Codec) on the calling thread; tokenization, the cache id and the store
// lookup (EncodeRequestPrefix/Document, ComputeCacheId, CacheBuilder::FindStoredCache) on an Executor; the
// compression as a Scheduler job and serialization plus the store Put on the Executor (CacheBuilder::Build),
// with a ServiceMetrics recording as the server's does. Only requests with `documents` are supported
// (document_cache_ids: UNIMPLEMENTED).
//
// Ownership: owns the runtime, scheduler, executor, store, metrics and builder.
// Thread safety: Compress may be called from any number of threads at once.
#ifndef KVC_BENCH_SERVICE_IN_PROCESS_COMPRESSOR_H_
#define KVC_BENCH_SERVICE_IN_PROCESS_COMPRESSOR_H_

#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "proto/kvc/v1/compressor.pb.h"
#include "service/cache_builder.h"
#include "service/compress_request.h"
#include "service/executor.h"
#include "service/metrics.h"
#include "service/model_runtime.h"
#include "service/scheduler.h"
#include "service/store/cache_store.h"

namespace kvc::bench {

struct InProcessCompressorOptions {
  ModelRuntimeOptions model;      // as kvc-server's --model, --device, --dtype, --threads
  std::string store_uri;          // e.g. file:///tmp/dir; must not be a directory another store has open
  SchedulerOptions scheduler;     // kvc-server: name = device, max_queue_tokens = --max-queue-tokens
  ExecutorOptions executor;       // kvc-server: the CompressorServiceOptions default
  CompressorLimits limits;        // kvc-server: the defaults, max_context_tokens from its flag
};

class InProcessCompressor {
 public:
  static absl::StatusOr<std::unique_ptr<InProcessCompressor>> Create(const InProcessCompressorOptions& options);
  ~InProcessCompressor();

  // Blocks until the response is complete. The response is filled as the service fills it (cache id,
  // cache_hit, info with timings); errors carry the codes the service would send.
  absl::StatusOr<kvc::v1::CompressResponse> Compress(const kvc::v1::CompressRequest& request) const;

  const ModelRuntime& runtime() const { return *runtime_; }
  CacheStore& store() const { return *store_; }

 private:
  InProcessCompressor() = default;

  CompressorLimits limits_;
  std::unique_ptr<ModelRuntime> runtime_;
  std::unique_ptr<CacheStore> store_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<CacheBuilder> builder_;
  // Destroyed first: it runs the builder's queued tasks before joining its threads.
  std::unique_ptr<Executor> executor_;
};

}  // namespace kvc::bench

#endif  // KVC_BENCH_SERVICE_IN_PROCESS_COMPRESSOR_H_
