#include "service/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace kvc {
namespace {

// Seconds from 1 ms to ~2 min: unary RPCs, queue waits, compressions of long documents.
const prometheus::Histogram::BucketBoundaries& SecondsBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120};
  return *b;
}

}  // namespace

ServiceMetrics::ServiceMetrics(prometheus::Registry& r)
    : registry_(r),
      requests_(prometheus::BuildCounter().Name("kvc_requests_total").Help("Finished RPCs by method and status code").Register(r)),
      request_seconds_(prometheus::BuildHistogram().Name("kvc_request_seconds").Help("RPC latency, from arrival to the last message").Register(r)),
      queue_seconds_(&prometheus::BuildHistogram()
                          .Name("kvc_queue_seconds")
                          .Help("Time a model job waited for its device")
                          .Register(r)
                          .Add({}, SecondsBuckets())),
      phase_seconds_(prometheus::BuildHistogram().Name("kvc_phase_seconds").Help("Time spent in one phase of a call's model work").Register(r)),
      prefill_tokens_(&prometheus::BuildCounter().Name("kvc_prefill_tokens_total").Help("Context tokens prefilled for compression").Register(r).Add({})),
      kept_tokens_(&prometheus::BuildCounter().Name("kvc_kept_tokens_total").Help("Context tokens kept after compression (per head)").Register(r).Add({})),
      compression_ratio_(&prometheus::BuildHistogram()
                              .Name("kvc_compression_ratio")
                              .Help("Tokens in over tokens kept, per compression")
                              .Register(r)
                              .Add({}, prometheus::Histogram::BucketBoundaries{1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64})),
      cache_hits_(&prometheus::BuildCounter().Name("kvc_cache_hits_total").Help("Compress requests answered from the store").Register(r).Add({})),
      cache_misses_(&prometheus::BuildCounter().Name("kvc_cache_misses_total").Help("Compress requests that had to compute").Register(r).Add({})),
      store_bytes_(prometheus::BuildCounter().Name("kvc_store_bytes").Help("Bytes moved to or from the cache store, by operation").Register(r)),
      store_seconds_(prometheus::BuildHistogram().Name("kvc_store_seconds").Help("Cache store call latency by operation and backend").Register(r)),
      store_errors_(prometheus::BuildCounter().Name("kvc_store_errors_total").Help("Cache store calls that failed in the store, by operation and backend").Register(r)),
      store_evictions_(prometheus::BuildCounter().Name("kvc_store_evictions_total").Help("Entries the store evicted to stay under its capacity").Register(r)),
      store_evicted_bytes_(prometheus::BuildCounter().Name("kvc_store_evicted_bytes_total").Help("Bytes of the entries the store evicted").Register(r)),
      inflight_(&prometheus::BuildGauge().Name("kvc_inflight_requests").Help("RPCs being served").Register(r).Add({})),
      generated_tokens_(&prometheus::BuildCounter().Name("kvc_generated_tokens_total").Help("Tokens decoded by Generate").Register(r).Add({})),
      ttft_(&prometheus::BuildHistogram()
                 .Name("kvc_time_to_first_token_seconds")
                 .Help("From a Generate's arrival to its first token")
                 .Register(r)
                 .Add({}, SecondsBuckets())),
      device_memory_(&prometheus::BuildGauge().Name("kvc_device_memory_bytes").Help("Memory the model's device holds for kvc").Register(r).Add({})),
      model_info_(prometheus::BuildGauge().Name("kvc_model_info").Help("The loaded model (value 1)").Register(r)) {}

void ServiceMetrics::RecordRequest(const std::string& rpc, const std::string& code, double seconds) {
  requests_.Add({{"rpc", rpc}, {"code", code}}).Increment();
  request_seconds_.Add({{"rpc", rpc}}, SecondsBuckets()).Observe(seconds);
}

void ServiceMetrics::RecordQueueSeconds(double seconds) { queue_seconds_->Observe(seconds); }

void ServiceMetrics::RecordPhase(const std::string& work, const std::string& phase, double seconds) {
  phase_seconds_.Add({{"work", work}, {"phase", phase}}, SecondsBuckets()).Observe(seconds);
}

void ServiceMetrics::RecordCompression(int64_t prefill_tokens, int64_t kept_tokens) {
  prefill_tokens_->Increment(static_cast<double>(prefill_tokens));
  kept_tokens_->Increment(static_cast<double>(kept_tokens));
  if (kept_tokens > 0) compression_ratio_->Observe(static_cast<double>(prefill_tokens) / kept_tokens);
}

void ServiceMetrics::RecordCacheLookup(bool hit) { (hit ? cache_hits_ : cache_misses_)->Increment(); }

void ServiceMetrics::RecordStore(const std::string& op, const std::string& backend, int64_t bytes, double seconds) {
  store_bytes_.Add({{"op", op}}).Increment(static_cast<double>(bytes));
  store_seconds_.Add({{"op", op}, {"backend", backend}}, SecondsBuckets()).Observe(seconds);
}

void ServiceMetrics::RecordGeneration(int64_t generated_tokens, double time_to_first_token_seconds) {
  generated_tokens_->Increment(static_cast<double>(generated_tokens));
  ttft_->Observe(time_to_first_token_seconds);
}

void ServiceMetrics::RecordStoreError(const std::string& op, const std::string& backend) {
  store_errors_.Add({{"op", op}, {"backend", backend}}).Increment();
}

void ServiceMetrics::InitStoreErrors(const std::string& op, const std::string& backend) {
  store_errors_.Add({{"op", op}, {"backend", backend}});  // Add creates the series at 0 or returns it as it is
}

void ServiceMetrics::RecordEviction(const std::string& backend, int64_t bytes) {
  store_evictions_.Add({{"backend", backend}}).Increment();
  store_evicted_bytes_.Add({{"backend", backend}}).Increment(static_cast<double>(bytes));
}

void ServiceMetrics::InitEvictions(const std::string& backend) {
  store_evictions_.Add({{"backend", backend}});
  store_evicted_bytes_.Add({{"backend", backend}});
}

void ServiceMetrics::SetDeviceMemoryBytes(double bytes) { device_memory_->Set(bytes); }

void ServiceMetrics::SetModelInfo(const std::string& model, const std::string& fingerprint, const std::string& device,
                                  const std::string& dtype) {
  model_info_.Add({{"model", model}, {"fingerprint", fingerprint}, {"device", device}, {"dtype", dtype}}).Set(1);
}

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsExposer(
    const std::string& listen, std::shared_ptr<prometheus::Registry> registry) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return absl::InvalidArgumentError(absl::StrCat("metrics listen address \"", listen, "\": expected HOST:PORT"));
  }
  try {  // civetweb reports a failed bind by throwing; nothing else in kvc throws past this point
    auto exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
    exposer->RegisterCollectable(registry);
    return exposer;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
}

}  // namespace kvc
