// The service's Prometheus metrics (DESIGN §8): `kvc_` prefix, base units, on a registry the caller owns
// and serves on its own port (MetricsExposer). There is no global registry: tests and embedders create
// their own.
//
// Ownership: ServiceMetrics borrows the registry, which must outlive it; metric objects live in the
// registry. Thread safety: every method may be called concurrently (prometheus-cpp metrics are atomic and
// label lookups are synchronized).
#ifndef KVC_SERVICE_METRICS_H_
#define KVC_SERVICE_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"

namespace kvc {

class ServiceMetrics {
 public:
  explicit ServiceMetrics(prometheus::Registry& registry);

  // One finished RPC: kvc_requests_total{rpc,code} and kvc_request_seconds{rpc}. `code` is the gRPC code's
  // name ("OK", "INVALID_ARGUMENT", ...).
  void RecordRequest(const std::string& rpc, const std::string& code, double seconds);
  void RecordQueueSeconds(double seconds);
  // kvc_phase_seconds{work,phase}: one phase of a call's model work. work: "compress" (phases tokenize,
  // queue, prefill, compress, serialize, store) or "generate" (queue, load, compose, prefill, decode), the
  // same phases a response's timings report.
  void RecordPhase(const std::string& work, const std::string& phase, double seconds);
  // One compression: prefilled and kept tokens, and the ratio achieved (tokens in / tokens kept).
  void RecordCompression(int64_t prefill_tokens, int64_t kept_tokens);
  void RecordCacheLookup(bool hit);
  // op: "get" | "put" | "delete"; backend: "file" | "redis" | "memory".
  void RecordStore(const std::string& op, const std::string& backend, int64_t bytes, double seconds);
  void RecordGeneration(int64_t generated_tokens, double time_to_first_token_seconds);
  // kvc_store_errors_total{op,backend}: a store call that failed for the store's reason (not the caller's).
  void RecordStoreError(const std::string& op, const std::string& backend);
  // Sets the op's error count to 0 if it has none yet: a series that exists before the first failure.
  void InitStoreErrors(const std::string& op, const std::string& backend);
  // kvc_store_evictions_total{backend} and kvc_store_evicted_bytes_total{backend}: entries the store
  // dropped to stay under its capacity. InitEvictions makes both series exist at 0.
  void RecordEviction(const std::string& backend, int64_t bytes);
  void InitEvictions(const std::string& backend);
  void SetDeviceMemoryBytes(double bytes);
  // kvc_model_info{model,fingerprint,device,dtype} = 1, the usual info-metric idiom.
  void SetModelInfo(const std::string& model, const std::string& fingerprint, const std::string& device,
                    const std::string& dtype);

  // Counts an RPC in kvc_inflight_requests for the guard's lifetime.
  class InflightGuard {
   public:
    explicit InflightGuard(prometheus::Gauge& g) : g_(&g) { g_->Increment(); }
    ~InflightGuard() {
      if (g_ != nullptr) g_->Decrement();
    }
    InflightGuard(InflightGuard&& o) noexcept : g_(o.g_) { o.g_ = nullptr; }
    InflightGuard(const InflightGuard&) = delete;
    InflightGuard& operator=(const InflightGuard&) = delete;
    InflightGuard& operator=(InflightGuard&&) = delete;

   private:
    prometheus::Gauge* g_;
  };
  InflightGuard Inflight() { return InflightGuard(*inflight_); }

 private:
  prometheus::Registry& registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Histogram* queue_seconds_;
  prometheus::Family<prometheus::Histogram>& phase_seconds_;
  prometheus::Counter* prefill_tokens_;
  prometheus::Counter* kept_tokens_;
  prometheus::Histogram* compression_ratio_;
  prometheus::Counter* cache_hits_;
  prometheus::Counter* cache_misses_;
  prometheus::Family<prometheus::Counter>& store_bytes_;
  prometheus::Family<prometheus::Histogram>& store_seconds_;
  prometheus::Family<prometheus::Counter>& store_errors_;
  prometheus::Family<prometheus::Counter>& store_evictions_;
  prometheus::Family<prometheus::Counter>& store_evicted_bytes_;
  prometheus::Gauge* inflight_;
  prometheus::Counter* generated_tokens_;
  prometheus::Histogram* ttft_;
  prometheus::Gauge* device_memory_;
  prometheus::Family<prometheus::Gauge>& model_info_;
};

// Serves `registry` at http://<listen>/metrics ("0.0.0.0:9090"; port 0 picks a free one, see
// exposer->GetListeningPorts()). INVALID_ARGUMENT for a malformed address, UNAVAILABLE if it cannot bind.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsExposer(
    const std::string& listen, std::shared_ptr<prometheus::Registry> registry);

}  // namespace kvc

#endif  // KVC_SERVICE_METRICS_H_
