// redis://: a CacheStore on a Redis server, shared by the service's replicas.
//
// URI: redis://[[user]:password@]host[:port][/db]; port 6379 and db 0 by default, user and password
// percent-decoded, IPv6 hosts in brackets.
//
// Keys of one entry (the {id} hash tag keeps them in one Redis Cluster slot):
//   kvc:m:{<id>}                 manifest hash: gen, size, parts, part_size, created, last_access (unix µs)
//   kvc:p:{<id>}:<gen>:<i>       part i of generation gen, at most StoreOptions::redis_part_bytes each
// A Put writes the new generation's parts and swaps the manifest (a Lua script that also deletes the old
// generation's parts) in one MULTI/EXEC, so readers see the old value or the new one, never a mix, and an
// interrupted Put leaves nothing behind: Redis discards a transaction whose EXEC never arrived. A Get
// reads the manifest, then that generation's parts; parts that vanish meanwhile mean a concurrent
// overwrite, and it starts again from the manifest. With a TTL every key of an entry expires with it,
// counted from the Put. Get refreshes last_access at most once a second, to keep hot reads from turning
// into a write each. Stat and List read only manifests (List walks them with SCAN).
//
// Faults: a command that fails on a pooled connection (the server restarted while it sat idle) reconnects
// once and runs again; all operations are safe to repeat (a repeated Delete may then report NOT_FOUND for
// the entry it removed). A failure on a fresh connection, a timeout or a failed reconnect is UNAVAILABLE
// with the server address and the cause.
//
// Ownership: the store owns its connections. Thread safety: all methods may be called concurrently; each
// call borrows one connection from a pool of StoreOptions::redis_pool_size and waits if all are in use.
// SIGPIPE from a dropped connection is blocked and discarded in the calling thread only.
#ifndef KVC_SERVICE_STORE_REDIS_STORE_H_
#define KVC_SERVICE_STORE_REDIS_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/store/cache_store.h"

namespace kvc {

struct RedisAddress {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string user;      // empty: the default user
  std::string password;  // empty: no AUTH
};

// INVALID_ARGUMENT naming the part of the URI that is wrong.
absl::StatusOr<RedisAddress> ParseRedisUri(const std::string& uri);

class RedisStore final : public CacheStore {
 public:
  // Connects once to check the address, credentials and db: UNAVAILABLE if the server cannot be reached,
  // FAILED_PRECONDITION if it refuses the credentials.
  static absl::StatusOr<std::unique_ptr<RedisStore>> Open(const std::string& uri,
                                                          const StoreOptions& options);
  ~RedisStore() override;
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  absl::Status Put(const std::string& id, absl::string_view bytes) override;
  absl::StatusOr<std::string> Get(const std::string& id) override;
  absl::StatusOr<CacheEntryInfo> Stat(const std::string& id) override;
  absl::Status Delete(const std::string& id) override;
  absl::StatusOr<ListPage> List(const std::string& prefix, int page_size,
                                const std::string& page_token) override;
  std::string backend() const override { return "redis"; }

 private:
  class Connection;

  RedisStore(RedisAddress address, const StoreOptions& options);

  absl::StatusOr<std::unique_ptr<Connection>> Connect();
  absl::StatusOr<std::unique_ptr<Connection>> Acquire(bool* fresh);
  void Release(std::unique_ptr<Connection> connection);
  void DropIdle();
  // Runs `op` on a pooled connection, reconnecting and running it once more if a pooled connection
  // turns out to be dead.
  template <typename T, typename Op>
  absl::StatusOr<T> Run(Op op);

  const RedisAddress address_;
  const std::string where_;  // "redis host:port" for messages
  const StoreOptions options_;

  absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle plus borrowed
};

}  // namespace kvc

#endif  // KVC_SERVICE_STORE_REDIS_STORE_H_
