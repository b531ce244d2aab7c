#include "service/store/memory_store.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "compressor/util/status_macros.h"
#include "service/store/list_request.h"

namespace kvc {
namespace {

absl::Status NotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("cache entry ", id, " not found in memory store"));
}

}  // namespace

std::unique_ptr<MemoryStore> MemoryStore::Create() { return std::unique_ptr<MemoryStore>(new MemoryStore()); }

absl::Status MemoryStore::Put(const std::string& id, absl::string_view bytes) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  // Copy before locking: a large value must not hold up other callers.
  auto value = std::make_shared<const std::string>(bytes.data(), bytes.size());
  absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  entries_[id] = Entry{std::move(value), now, now};
  return absl::OkStatus();
}

absl::StatusOr<std::string> MemoryStore::Get(const std::string& id) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  std::shared_ptr<const std::string> value;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return NotFound(id);
    it->second.last_access = absl::Now();
    value = it->second.bytes;
  }
  return *value;
}

absl::StatusOr<CacheEntryInfo> MemoryStore::Stat(const std::string& id) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return NotFound(id);
  return CacheEntryInfo{id, static_cast<int64_t>(it->second.bytes->size()), it->second.created,
                        it->second.last_access};
}

absl::Status MemoryStore::Delete(const std::string& id) {
  KVC_RETURN_IF_ERROR(ValidateCacheId(id));
  absl::MutexLock lock(&mu_);
  if (entries_.erase(id) == 0) return NotFound(id);
  return absl::OkStatus();
}

absl::StatusOr<ListPage> MemoryStore::List(const std::string& prefix, int page_size,
                                           const std::string& page_token) {
  KVC_ASSIGN_OR_RETURN(store_internal::ListRequest request,
                       store_internal::ParseListRequest(prefix, page_size, page_token));
  absl::MutexLock lock(&mu_);
  return store_internal::PageOf(request, entries_, [](auto it) {
    return CacheEntryInfo{it->first, static_cast<int64_t>(it->second.bytes->size()), it->second.created, it->second.last_access};
  });
}

}  // namespace kvc
