// A CacheStore that counts its backend's failures in kvc_store_errors_total{op,backend}, around any other
// store. The roles call the store from many places; wrapping it once counts every failure of every call
// without each caller remembering to. A caller's mistake (NOT_FOUND for an absent id, INVALID_ARGUMENT for
// a malformed one) is not a store failure and is not counted.
//
// Ownership: owns the wrapped store; borrows `metrics`, which must outlive it. Thread safety: as the
// wrapped store (every backend is thread safe).
#ifndef KVC_SERVICE_METERED_STORE_H_
#define KVC_SERVICE_METERED_STORE_H_

#include <memory>
#include <string>

#include "service/metrics.h"
#include "service/store/cache_store.h"

namespace kvc {

class MeteredStore final : public CacheStore {
 public:
  // Also sets every op's error count for this backend to 0, so that rates and alerts see the series
  // before the first failure.
  MeteredStore(std::unique_ptr<CacheStore> store, ServiceMetrics* metrics);

  absl::Status Put(const std::string& id, absl::string_view bytes) override;
  absl::StatusOr<std::string> Get(const std::string& id) override;
  absl::StatusOr<std::unique_ptr<CacheValue>> GetValue(const std::string& id) override;
  absl::StatusOr<CacheEntryInfo> Stat(const std::string& id) override;
  absl::Status Delete(const std::string& id) override;
  absl::StatusOr<ListPage> List(const std::string& prefix, int page_size, const std::string& page_token) override;
  std::string backend() const override { return backend_; }

 private:
  const absl::Status& Count(const char* op, const absl::Status& status) const;

  const std::unique_ptr<CacheStore> store_;
  ServiceMetrics* const metrics_;
  const std::string backend_;
};

}  // namespace kvc

#endif  // KVC_SERVICE_METERED_STORE_H_
