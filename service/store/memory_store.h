// memory://: a CacheStore held in a map in this process, for tests. Nothing survives the object.
//
// Ownership: the store owns copies of all values. Thread safety: all methods may be called concurrently;
// one mutex guards the map, and values are shared immutably so a Get copies outside the lock.
#ifndef KVC_SERVICE_STORE_MEMORY_STORE_H_
#define KVC_SERVICE_STORE_MEMORY_STORE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/store/cache_store.h"

namespace kvc {

class MemoryStore final : public CacheStore {
 public:
  static std::unique_ptr<MemoryStore> Create();

  absl::Status Put(const std::string& id, absl::string_view bytes) override;
  absl::StatusOr<std::string> Get(const std::string& id) override;
  absl::StatusOr<CacheEntryInfo> Stat(const std::string& id) override;
  absl::Status Delete(const std::string& id) override;
  absl::StatusOr<ListPage> List(const std::string& prefix, int page_size,
                                const std::string& page_token) override;
  std::string backend() const override { return "memory"; }

 private:
  MemoryStore() = default;

  struct Entry {
    std::shared_ptr<const std::string> bytes;
    absl::Time created;
    absl::Time last_access;
  };

  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvc

#endif  // KVC_SERVICE_STORE_MEMORY_STORE_H_
