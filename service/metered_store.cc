#include "service/metered_store.h"

#include <utility>

namespace kvc {

MeteredStore::MeteredStore(std::unique_ptr<CacheStore> store, ServiceMetrics* metrics)
    : store_(std::move(store)), metrics_(metrics), backend_(store_->backend()) {
  for (const char* op : {"put", "get", "stat", "delete", "list"}) metrics_->InitStoreErrors(op, backend_);
}

const absl::Status& MeteredStore::Count(const char* op, const absl::Status& status) const {
  if (!status.ok() && !absl::IsNotFound(status) && !absl::IsInvalidArgument(status)) {
    metrics_->RecordStoreError(op, backend_);
  }
  return status;
}

absl::Status MeteredStore::Put(const std::string& id, absl::string_view bytes) {
  return Count("put", store_->Put(id, bytes));
}

absl::StatusOr<std::string> MeteredStore::Get(const std::string& id) {
  absl::StatusOr<std::string> r = store_->Get(id);
  Count("get", r.status());
  return r;
}

absl::StatusOr<std::unique_ptr<CacheValue>> MeteredStore::GetValue(const std::string& id) {
  absl::StatusOr<std::unique_ptr<CacheValue>> r = store_->GetValue(id);
  Count("get", r.status());
  return r;
}

absl::StatusOr<CacheEntryInfo> MeteredStore::Stat(const std::string& id) {
  absl::StatusOr<CacheEntryInfo> r = store_->Stat(id);
  Count("stat", r.status());
  return r;
}

absl::Status MeteredStore::Delete(const std::string& id) { return Count("delete", store_->Delete(id)); }

absl::StatusOr<ListPage> MeteredStore::List(const std::string& prefix, int page_size,
                                            const std::string& page_token) {
  absl::StatusOr<ListPage> r = store_->List(prefix, page_size, page_token);
  Count("list", r.status());
  return r;
}

}  // namespace kvc
