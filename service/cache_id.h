// Cache ids: the SHA-256 of everything that determines a cache's bytes (DESIGN §3; the byte layout is in
// docs/api.md, "How cache ids are computed"), so that a repeated request finds its cache with no compute.
//
// Thread safety: pure functions.
#ifndef KVC_SERVICE_CACHE_ID_H_
#define KVC_SERVICE_CACHE_ID_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compressor/format/kvc_dtype.h"

namespace kvc {

struct CacheIdInput {
  std::string fingerprint;  // the model's, 64 lowercase hex characters
  // The spec after defaults: the method name, and its budget unless the method is "none".
  std::string method;
  std::optional<double> ratio;
  std::optional<int64_t> target_tokens;
  std::map<std::string, std::string> options;  // as given; defaults are not filled in
  KvcDtype dtype = KvcDtype::kF32;
  KvcCodec codec = KvcCodec::kNone;
  // The dtype the model computed in ("float32", "bfloat16", "float16"): it changes the stored values and
  // can change which entries are kept, so servers of different dtypes sharing a store never swap caches.
  // The device is left out: CPU and CUDA in one dtype differ by floating-point noise only.
  std::string compute_dtype = "float32";
  // The weight format the model ran with ("float", "q4", "int8"): q4 and int8 round the weights and
  // activations, so their caches differ too. Left out of the id under "float", so float ids stay as they were.
  std::string weights = "float";
  // The context: either token ids ([prefix][documents], with the protected prefix length) or, when it is
  // composed from precomputed caches, their ids in order (then `context` must be empty).
  int64_t protected_prefix = 0;
  std::vector<int64_t> context;
  std::vector<std::string> document_cache_ids;
  // The suffix token ids; leave empty when the method does not use the query.
  std::vector<int64_t> query;
};

// The canonical spec JSON that enters the hash, e.g.
// {"codec":"none","compute_dtype":"float32","dtype":"f32","method":"finch","options":{"chunk_tokens":"512"},
//  "ratio":8.0}
std::string CanonicalSpecJson(const CacheIdInput& in);

// 64 lowercase hex characters. INVALID_ARGUMENT for a malformed fingerprint or referenced id, both or
// neither context source, token ids outside int32, or both budgets.
absl::StatusOr<std::string> ComputeCacheId(const CacheIdInput& in);

}  // namespace kvc

#endif  // KVC_SERVICE_CACHE_ID_H_
