// Loading stored caches for model work: fetch a .kvc from the store, check it against the loaded model,
// and decode it to a KvCache on the model's device. Shared by the generate role (GenerateRequest.cache_ids)
// and the compress role (CompressRequest.document_cache_ids).
//
// Thread safety: pure functions over a thread-safe store and an immutable runtime.
#ifndef KVC_SERVICE_CACHE_LOADER_H_
#define KVC_SERVICE_CACHE_LOADER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compressor/format/kvc_header.h"
#include "compressor/kv/kv_cache.h"
#include "service/model_runtime.h"
#include "service/store/cache_store.h"

namespace kvc {

struct LoadedCache {
  std::string id;
  KvcHeader header;           // as stored (metadata holds model, rope, spec, prefix_tokens)
  int64_t prefix_tokens = 0;  // leading entries that are the protected prefix (metadata "prefix_tokens")
  int64_t stored_bytes = 0;
  double fetch_seconds = 0;   // the store read alone (kvc_store_seconds), without decoding
  KvCache cache;              // on the model's device, in the model's dtype; owns its storage
};

// Fetches and decodes one cache. `field` names the request field in messages (e.g. "cache_ids[2]").
// INVALID_ARGUMENT for a malformed id; NOT_FOUND when it is not stored; FAILED_PRECONDITION for a cache
// made by another model; DATA_LOSS for a corrupt value; UNAVAILABLE when the store cannot be reached.
absl::StatusOr<LoadedCache> LoadCache(CacheStore& store, const ModelRuntime& runtime, absl::string_view id,
                                      absl::string_view field);

// Lays loaded caches end to end for one context, as GenerateRequest.cache_ids documents: the first keeps its
// protected prefix, every later one loses its first prefix_tokens entries, and keys are re-rotated to
// consecutive positions (ComposeCaches with ComposePart::skip_leading). A single cache is returned as is
// (moved, not copied).
absl::StatusOr<KvCache> ComposeLoaded(std::vector<LoadedCache> caches, const ModelRuntime& runtime);

}  // namespace kvc

#endif  // KVC_SERVICE_CACHE_LOADER_H_
