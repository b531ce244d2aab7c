// GeneratorServiceImpl: the `generate` role, kvc.v1.Generator (proto/kvc/v1/generator.proto is the
// contract). It decodes answers from stored caches with the model the server loaded.
//
// One Generate call goes through three threads, never blocking a gRPC thread on store I/O or model work:
//   1. the gRPC thread validates the request (cheap checks only: ids, counts, prompt, sampling, model);
//   2. the service's Executor fetches and decodes the caches (LoadCache) and tokenizes the query (or each
//      question), then refuses a request that would overflow the model window before it takes a place in
//      the queue;
//   3. a Scheduler job (cost: prompt + max_tokens, summed over the questions) composes the caches once and
//      decodes each question from them in turn with kvc::Generator.
// Tokens are streamed with at most one write in flight. The decoding thread never waits for the client:
// tokens produced while a write is in flight are coalesced into the next TextDelta, so a slow reader costs
// one growing message, not a queue of them or a stalled device. The stream ends with one Usage message and
// OK. Cancellation and deadlines are checked before loading each cache, after tokenizing, before the job
// starts, before the prompt prefill and between decode steps; a cancelled call (or one whose deadline
// passed) is finished at once with CANCELLED (DEADLINE_EXCEEDED), even after its last token, and its
// decoding stops at the next step.
//
// Ownership: borrows the runtime, the scheduler, the store and the metrics (nullable), which must outlive
// the service. Owns its executor and generator.
// Lifetime: shut the grpc::Server down before destroying the service; the destructor then waits for the
// work of calls that are still loading, queued or decoding (queued jobs end as soon as the scheduler
// reaches them, since their calls are cancelled).
// Thread safety: gRPC calls Generate from any number of threads at once; calls share only thread-safe
// objects (store, scheduler, metrics, the immutable runtime and generator).
#ifndef KVC_SERVICE_GENERATOR_SERVICE_H_
#define KVC_SERVICE_GENERATOR_SERVICE_H_

#include <cstdint>
#include <memory>

#include <grpcpp/support/server_callback.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "compressor/generate/generator.h"
#include "proto/kvc/v1/generator.grpc.pb.h"
#include "service/executor.h"
#include "service/metrics.h"
#include "service/model_runtime.h"
#include "service/pause_points.h"
#include "service/scheduler.h"
#include "service/store/cache_store.h"

namespace kvc {

struct GeneratorServiceOptions {
  // Most cache_ids per request (ModelInfo.limits.max_documents), >= 1.
  int32_t max_documents = 64;
  // Threads and queue of the executor that loads caches from the store and tokenizes queries.
  ExecutorOptions executor;
  // Passed to kvc::Generator (suffix prefill chunking).
  GeneratorOptions generator;
  // The test hook that holds calls at named points (pause_points.h); null in service. Borrowed.
  const PausePoints* pause_points = nullptr;
};

class GeneratorServiceImpl final : public kvc::v1::Generator::CallbackService {
 public:
  // INVALID_ARGUMENT for a null runtime, scheduler or store, or out-of-range options.
  static absl::StatusOr<std::unique_ptr<GeneratorServiceImpl>> Create(const ModelRuntime* runtime,
                                                                      Scheduler* scheduler, CacheStore* store,
                                                                      ServiceMetrics* metrics,
                                                                      const GeneratorServiceOptions& options);
  ~GeneratorServiceImpl() override;

  grpc::ServerWriteReactor<kvc::v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                                const kvc::v1::GenerateRequest* request) override;

 private:
  friend class GenerateCall;

  GeneratorServiceImpl(const ModelRuntime* runtime, Scheduler* scheduler, CacheStore* store,
                       ServiceMetrics* metrics, const GeneratorServiceOptions& options,
                       std::unique_ptr<Executor> executor, std::unique_ptr<Generator> generator);

  // Calls alive (their reactor not yet deleted); the destructor waits for zero.
  void CallStarted();
  void CallEnded();

  const ModelRuntime* const runtime_;
  Scheduler* const scheduler_;
  CacheStore* const store_;
  ServiceMetrics* const metrics_;
  const GeneratorServiceOptions options_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<Generator> generator_;

  absl::Mutex mu_;
  int64_t live_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvc

#endif  // KVC_SERVICE_GENERATOR_SERVICE_H_
