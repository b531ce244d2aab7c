// CacheStore: where serialized .kvc caches live, keyed by a 64-hex-character cache id (DESIGN §6).
//
// Backends, picked by URI in OpenCacheStore:
//   file:///abs/path, file://./relative, or a plain path   one file per id (default; see file_store.h)
//   redis://[[user]:password@]host[:port][/db]            shared store (see redis_store.h)
//   memory://                                             process-local map, for tests
//
// Ownership: OpenCacheStore returns a store the caller owns. Values are copied in on Put and returned as
// fresh strings from Get; the store keeps no reference to caller memory after a call returns.
//
// Thread safety: every backend is safe for concurrent use by any number of threads on one store object
// (the gRPC roles call it from many threads at once). Each call is atomic with respect to the others: a
// Get observes either a value some Put wrote in full or NOT_FOUND, never a mix of two values.
//
// Errors: every method validates the id first (INVALID_ARGUMENT naming "cache_id"). Unknown ids give
// NOT_FOUND; a store that cannot be reached gives UNAVAILABLE; a value that does not fit gives
// RESOURCE_EXHAUSTED. Messages name the backend location and what failed.
#ifndef KVC_SERVICE_STORE_CACHE_STORE_H_
#define KVC_SERVICE_STORE_CACHE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kvc {

struct CacheEntryInfo {
  std::string id;
  int64_t size_bytes = 0;
  absl::Time created;      // when the current value was Put
  absl::Time last_access;  // last Put or Get; backends may coarsen it (redis: 1 s)
};

struct ListPage {
  std::vector<CacheEntryInfo> entries;  // sorted by id
  std::string next_page_token;          // empty on the last page
};

struct StoreOptions {
  // file: total bytes of values kept; least recently used entries are evicted past it. 0 = unlimited.
  int64_t capacity_bytes = 0;
  // file: called with each evicted entry's size, under the store's lock (keep it short; it must not call
  // the store). Empty: nothing is told. Lets the server count evictions without the store knowing metrics.
  std::function<void(int64_t bytes)> on_evict;
  // redis: every key of an entry expires this long after its Put (a Get does not extend it). 0 = never.
  absl::Duration ttl = absl::ZeroDuration();
  // redis: values are stored in parts of at most this many bytes under one manifest key.
  int64_t redis_part_bytes = int64_t{4} << 20;
  // redis: connections kept open; callers beyond this wait for a free one.
  int redis_pool_size = 8;
  absl::Duration connect_timeout = absl::Seconds(2);
  // redis: per socket read or write; a slower server gives UNAVAILABLE.
  absl::Duration io_timeout = absl::Seconds(10);
};

// A stored value held for reading. bytes() stays valid and unchanged for the object's lifetime, even if
// the entry is overwritten, evicted or deleted meanwhile. Thread safety: immutable.
class CacheValue {
 public:
  virtual ~CacheValue() = default;
  virtual absl::string_view bytes() const = 0;
};

class CacheStore {
 public:
  // List page sizes: 0 asks for the default, larger requests are cut to the maximum.
  static constexpr int kDefaultPageSize = 100;
  static constexpr int kMaxPageSize = 1000;

  virtual ~CacheStore() = default;

  // Stores `bytes` under `id`, replacing any earlier value. All or nothing: after an error, readers see the
  // previous value (or none), never part of the new one.
  virtual absl::Status Put(const std::string& id, absl::string_view bytes) = 0;

  // The whole value. NOT_FOUND if absent. Counts as an access for LRU and last_access.
  virtual absl::StatusOr<std::string> Get(const std::string& id) = 0;

  // Like Get, but a backend may hand out the value without copying it (the file store maps the file
  // read-only). The default wraps Get's string.
  virtual absl::StatusOr<std::unique_ptr<CacheValue>> GetValue(const std::string& id);

  // Size and times without reading the value; not an access. NOT_FOUND if absent.
  virtual absl::StatusOr<CacheEntryInfo> Stat(const std::string& id) = 0;

  // NOT_FOUND if absent.
  virtual absl::Status Delete(const std::string& id) = 0;

  // Entries whose id starts with `prefix` (0 to 64 lowercase hex characters), sorted by id, at most
  // `page_size` of them (0 = kDefaultPageSize, negative = INVALID_ARGUMENT). `page_token` is empty for the
  // first page, else the next_page_token of the previous page, which is opaque to callers. Pages are
  // computed per call: entries written between calls may or may not appear.
  virtual absl::StatusOr<ListPage> List(const std::string& prefix, int page_size,
                                        const std::string& page_token) = 0;

  // "file", "redis" or "memory": a metrics label.
  virtual std::string backend() const = 0;
};

// OK iff `id` is exactly 64 lowercase hex characters; else INVALID_ARGUMENT naming the field "cache_id".
absl::Status ValidateCacheId(absl::string_view id);

// Opens the backend that `uri` names (see the top of this file). INVALID_ARGUMENT for a malformed or
// unknown URI; UNAVAILABLE if the store cannot be reached; FAILED_PRECONDITION if a file store's directory
// is already open in another store object.
absl::StatusOr<std::unique_ptr<CacheStore>> OpenCacheStore(const std::string& uri,
                                                           const StoreOptions& options);

// `uri` as it may be logged or printed: a password in a redis:// URI becomes "***"
// (redis://:***@host:6379/0); anything else comes back as it is.
std::string StoreUriForDisplay(const std::string& uri);

}  // namespace kvc

#endif  // KVC_SERVICE_STORE_CACHE_STORE_H_
