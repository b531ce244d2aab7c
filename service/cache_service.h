// CacheServiceImpl: the `cache` role, kvc.v1.CacheService (proto/kvc/v1/cache.proto is the contract) over
// a CacheStore. Torch-free: it needs no model.
//
// Every call validates its request on the gRPC thread (cheap checks only) and hands the store I/O, hashing
// and .kvc validation to the service's own Executor, so gRPC threads never block on them. A full executor
// queue fails the call with RESOURCE_EXHAUSTED. Get streams with one write in flight at a time (the next
// chunk is queued from OnWriteDone), so a slow client holds back the server rather than filling its
// memory; cancellation and deadlines are checked before every chunk. Put buffers the value (at most
// max_value_bytes per call), checks its length, SHA-256 and .kvc checksums, then stores it with one atomic
// CacheStore::Put.
//
// Ownership: borrows the store, which must outlive the service. Owns its executor.
// Lifetime: shut the grpc::Server down before destroying the service (as with every gRPC service); the
// destructor then drains the executor.
// Thread safety: gRPC calls the methods from any number of threads at once; the service keeps no state of
// its own across calls, and the store is thread-safe (cache_store.h).
#ifndef KVC_SERVICE_CACHE_SERVICE_H_
#define KVC_SERVICE_CACHE_SERVICE_H_

#include <cstdint>
#include <memory>

#include <grpcpp/support/server_callback.h>

#include "absl/status/statusor.h"
#include "proto/kvc/v1/cache.grpc.pb.h"
#include "service/executor.h"
#include "service/store/cache_store.h"

namespace kvc {

struct CacheServiceOptions {
  // Largest value a Put accepts (CacheHeader.total_bytes above it: RESOURCE_EXHAUSTED). The whole value is
  // held in memory while it is checked, so this bounds the memory of one Put.
  int64_t max_value_bytes = int64_t{1} << 30;
  // Data chunk size of a Get that leaves chunk_bytes unset or 0; 1 to 1 MiB. The proto documents 1 MiB.
  int32_t default_chunk_bytes = 1 << 20;
  // Threads and queue of the executor that runs the store calls.
  ExecutorOptions executor;
};

// The wire limit on one data chunk, in both directions.
inline constexpr int32_t kMaxCacheChunkBytes = 1 << 20;

class CacheServiceImpl final : public kvc::v1::CacheService::CallbackService {
 public:
  // INVALID_ARGUMENT for a null store or out-of-range options.
  static absl::StatusOr<std::unique_ptr<CacheServiceImpl>> Create(CacheStore* store,
                                                                  const CacheServiceOptions& options);
  ~CacheServiceImpl() override;

  grpc::ServerWriteReactor<kvc::v1::CacheChunk>* Get(grpc::CallbackServerContext* ctx,
                                                     const kvc::v1::GetCacheRequest* request) override;
  grpc::ServerReadReactor<kvc::v1::CacheChunk>* Put(grpc::CallbackServerContext* ctx,
                                                    kvc::v1::PutCacheResponse* response) override;
  grpc::ServerUnaryReactor* Stat(grpc::CallbackServerContext* ctx, const kvc::v1::StatCacheRequest* request,
                                 kvc::v1::StatCacheResponse* response) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx, const kvc::v1::DeleteCacheRequest* request,
                                   kvc::v1::DeleteCacheResponse* response) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx, const kvc::v1::ListCachesRequest* request,
                                 kvc::v1::ListCachesResponse* response) override;

 private:
  CacheServiceImpl(CacheStore* store, const CacheServiceOptions& options, std::unique_ptr<Executor> executor);

  CacheStore* const store_;
  const CacheServiceOptions options_;
  std::unique_ptr<Executor> executor_;
};

}  // namespace kvc

#endif  // KVC_SERVICE_CACHE_SERVICE_H_
