// CacheBuilder: makes one compressed cache for the compress role and stores it. The model work (composing
// referenced caches, prefill, scoring, selection) runs as a job of the device's Scheduler, with the tokens
// to prefill as its cost; serialization and the store Put run on the role's Executor. Also the lookup that
// answers a repeated request from the store with no model work.
//
// Cancellation and deadlines are checked before the job starts, between prefill chunks, after the
// selection, after serializing and around the store Put, so that a call stopped in any phase ends as
// CANCELLED or DEADLINE_EXCEEDED. A call stopped before the Put stores nothing; one stopped during the Put
// leaves the complete cache it wrote (a later identical request finds it), and still reports the stop.
//
// Ownership: borrows the runtime, scheduler, executor, store, metrics and pause points (both nullable);
// they must outlive every Build's `done` call.
// Thread safety: Build and FindStoredCache may be called from any thread at once.
#ifndef KVC_SERVICE_CACHE_BUILDER_H_
#define KVC_SERVICE_CACHE_BUILDER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "compressor/format/kv_cache_adapter.h"
#include "compressor/methods/compression.h"
#include "proto/kvc/v1/common.pb.h"
#include "service/cache_loader.h"
#include "service/executor.h"
#include "service/metrics.h"
#include "service/model_runtime.h"
#include "service/pause_points.h"
#include "service/scheduler.h"
#include "service/store/cache_store.h"

namespace kvc {

struct CacheBuildInput {
  std::string cache_id;
  std::shared_ptr<const CompressionMethod> method;
  std::string canonical_spec;  // CanonicalSpecJson of the id's input: recorded in the .kvc metadata
  KvcEncodeOptions encode;
  // The context: token ids ([prefix][documents]) with the protected prefix length, or, when `sources` is
  // not empty, those caches composed (ComposeLoaded; the first one's prefix is protected) and no ids.
  std::vector<int64_t> context;
  int64_t protected_prefix = 0;
  std::vector<LoadedCache> sources;
  std::vector<int64_t> suffix;  // empty for query-agnostic methods
  // The job is not started, and compression stops at its next chunk, once `cancelled` returns true
  // (CANCELLED) or the deadline passes (DEADLINE_EXCEEDED). `cancelled` may be empty; it is called from any
  // thread, and with the test pause points also after `done`, so it must stay safe to call.
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> cancelled;
};

// CacheInfo of the stored cache; its timings hold queue, prefill, compress, serialize and store (the Put).
using BuildDone = std::function<void(absl::StatusOr<kvc::v1::CacheInfo>)>;

class CacheBuilder {
 public:
  // `store_backend`: the kvc_store_seconds label. `pause_points`: the test hook (pause_points.h), or null.
  CacheBuilder(const ModelRuntime* runtime, Scheduler* scheduler, Executor* executor, CacheStore* store,
               ServiceMetrics* metrics, std::string store_backend, const PausePoints* pause_points = nullptr)
      : runtime_(runtime), scheduler_(scheduler), executor_(executor), store_(store), metrics_(metrics),
        store_backend_(std::move(store_backend)), pause_points_(pause_points) {}

  // Queues the work and returns; `done` is called exactly once: on a scheduler or executor thread, or on
  // the calling thread when the job is refused. Errors: RESOURCE_EXHAUSTED when the queue is full (or the
  // job is larger than the whole queue), UNAVAILABLE while draining, CANCELLED / DEADLINE_EXCEEDED, the
  // methods' INVALID_ARGUMENT / OUT_OF_RANGE (qualified with "spec."), and the store's errors.
  void Build(CacheBuildInput input, BuildDone done) const;

  // The stored cache's description when `cache_id` is stored, nullopt when it is not. Adds the time spent
  // to *store_seconds. Store errors other than NOT_FOUND are returned; a stored value whose header does
  // not read is DATA_LOSS.
  absl::StatusOr<std::optional<kvc::v1::CacheInfo>> FindStoredCache(const std::string& cache_id,
                                                                    double* store_seconds) const;

  // The store's label for metrics.
  const std::string& store_backend() const { return store_backend_; }

 private:
  struct Work;
  void RunJob(const std::shared_ptr<Work>& work, const JobStart& start) const;
  void SerializeAndStore(const std::shared_ptr<Work>& work) const;

  const ModelRuntime* const runtime_;
  Scheduler* const scheduler_;
  Executor* const executor_;
  CacheStore* const store_;
  ServiceMetrics* const metrics_;
  const std::string store_backend_;
  const PausePoints* const pause_points_;
};

}  // namespace kvc

#endif  // KVC_SERVICE_CACHE_BUILDER_H_
