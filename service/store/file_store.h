// file://: a CacheStore with one file per id under a root directory, the default backend.
//
// Layout: <root>/<id[0:2]>/<id[2:4]>/<id>.kvc, the file holding exactly the value's bytes (so an operator
// can copy a .kvc out by hand). Paths are built only from validated ids. <root>/.lock is held with flock
// for the life of the store, so a second store on the same directory (in this process or another) fails
// to open instead of keeping a second, diverging index.
//
// Atomic writes: Put writes <shard>/.<id>.<random>.tmp, fsyncs it, renames it over <id>.kvc and fsyncs the
// directory. A crash leaves either the old file or the new one, plus perhaps a temp file, which the next
// Open deletes.
//
// Index and LRU: Open rebuilds the index (size, created, last access) by scanning the directory; nothing
// else is kept on disk. Filesystems are often mounted noatime, so the store keeps its own access times and
// persists each one as the file's mtime (futimens on Put and Get: one metadata update, no fsync). Access
// stamps are strictly increasing within a store, so the LRU order after a restart is exactly the order
// before it, up to access times not yet written back when the machine itself went down. `created` comes
// from the file's birth time (statx), or its mtime where the filesystem keeps no birth time.
//
// Capacity: with capacity_bytes > 0, a Put that takes the total past it evicts least recently used
// entries (never the one just written); a value larger than the capacity is RESOURCE_EXHAUSTED.
// Concurrent Puts may briefly hold their temp files on disk beyond the capacity.
//
// Ownership: the store owns its open lock file and its index. Thread safety: all methods may be called
// concurrently. One mutex guards the index and the renames and unlinks that change it; the data of a Put
// is written and fsynced outside it, and a Get reads through a descriptor opened under it, so a concurrent
// overwrite or eviction never yields a mix.
#ifndef KVC_SERVICE_STORE_FILE_STORE_H_
#define KVC_SERVICE_STORE_FILE_STORE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/store/cache_store.h"

namespace kvc {

class FileStore final : public CacheStore {
 public:
  // Creates `root` (and its parents) if missing; a relative `root` is resolved against the cwd now, once.
  // FAILED_PRECONDITION if another store holds it.
  static absl::StatusOr<std::unique_ptr<FileStore>> Open(const std::string& root,
                                                         const StoreOptions& options);
  ~FileStore() override;
  FileStore(const FileStore&) = delete;
  FileStore& operator=(const FileStore&) = delete;

  absl::Status Put(const std::string& id, absl::string_view bytes) override;
  absl::StatusOr<std::string> Get(const std::string& id) override;
  // A read-only map of the entry's file: no copy. The mapping pins the version it opened.
  absl::StatusOr<std::unique_ptr<CacheValue>> GetValue(const std::string& id) override;
  absl::StatusOr<CacheEntryInfo> Stat(const std::string& id) override;
  absl::Status Delete(const std::string& id) override;
  absl::StatusOr<ListPage> List(const std::string& prefix, int page_size,
                                const std::string& page_token) override;
  std::string backend() const override { return "file"; }

  // Total bytes of the values held (not counting temp files).
  int64_t used_bytes();

 private:
  // Validates the id, opens its file under the index lock (pinning that version) and records the access;
  // the caller owns the descriptor.
  absl::StatusOr<int> OpenForRead(const std::string& id);
  struct Entry {
    int64_t size_bytes = 0;
    absl::Time created;
    absl::Time last_access;
    std::list<const std::string*>::iterator lru;  // points at this entry's key in entries_
  };

  FileStore(std::string root, int lock_fd, int64_t capacity_bytes, std::function<void(int64_t)> on_evict);

  absl::Status Scan();
  std::string ShardDir(const std::string& id) const;
  std::string EntryPath(const std::string& id) const;
  // A fresh access time, later than every earlier one of this store.
  absl::Time NextStamp() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Touch(std::map<std::string, Entry>::iterator it, absl::Time stamp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Insert(const std::string& id, int64_t size, absl::Time created, absl::Time last_access)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Remove(std::map<std::string, Entry>::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes least recently used entries other than `keep` until `incoming` more bytes fit.
  void EvictFor(int64_t incoming, const std::string& keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string root_;
  const int lock_fd_;
  const int64_t capacity_bytes_;
  const std::function<void(int64_t)> on_evict_;  // may be empty

  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<const std::string*> lru_ ABSL_GUARDED_BY(mu_);  // front = least recently used
  int64_t used_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_stamp_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace kvc

#endif  // KVC_SERVICE_STORE_FILE_STORE_H_
