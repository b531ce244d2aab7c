// Composition of KV caches: several independently computed caches (e.g. one per document, each compressed
// on its own) laid end to end so that one decode can attend to all of them, and deep copies of a cache.
//
// A composed cache is what a fresh prefill would hold only in its first layer: deeper layers of each part
// never attended to the parts before it. Keys are re-rotated so that every entry carries the rotary position
// of its place in the composition, which is what the attention of later tokens expects.
//
// Ownership: inputs are borrowed for the duration of the call and never modified; results own fresh storage.
// Thread safety: the functions hold no state; several may read the same input caches concurrently as long
// as nothing writes to those caches meanwhile.
#ifndef KVC_COMPRESSOR_KV_COMPOSE_H_
#define KVC_COMPRESSOR_KV_COMPOSE_H_

#include <initializer_list>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "compressor/kv/kv_cache.h"
#include "compressor/model/rope.h"

namespace kvc {

// Concatenates `caches` in order, layer by layer. In layer l, the entries of caches[i] follow those of
// caches[0..i-1]; with base = the number of layer-l entries before them, each key k: [kv_heads, len,
// head_dim] is re-rotated from its current rotary position (caches[i]->RotaryPositions(l)) to base + j for
// its j-th entry, so the result's keys sit at their compacted index.
//
// The result: key_rotation() == kCompacted; next_position() == its longest layer (the total entry count of a
// dense composition), so decoding continues right after the last entry; ragged parts keep their padding
// slots (and its Valid mask) in place;
// model_fingerprint() is the caches' common one; dtype and device are the caches'. Positions(l) keeps every
// entry's ORIGINAL position within its own source, without any offset: positions of different parts overlap
// (two documents both start at 0) and only say where an entry came from, not where it is rotated to.
// Values are copied unchanged.
//
// A single cache composes to a deep copy re-rotated the same way (a kCompacted cache is then unchanged).
// INVALID_ARGUMENT for an empty list or a null entry; FAILED_PRECONDITION naming the first index whose
// shape (layers, kv heads, head_dim, dtype, device) or model fingerprint differs from caches[0];
// RESOURCE_EXHAUSTED when memory runs out.
absl::StatusOr<KvCache> ComposeCaches(const std::vector<const KvCache*>& caches, const Rope& rope);

// One input of a composition: every entry of `cache` from index `skip_leading` on, in each layer.
struct ComposePart {
  const KvCache* cache = nullptr;
  int64_t skip_leading = 0;  // e.g. the protected prefix that an earlier part already holds
};

// As above, with leading entries of some parts left out. Each kept key is re-rotated from the rotary
// position it carries in its source to its index in the result, as above. INVALID_ARGUMENT also for
// skip_leading < 0 or past a layer's length.
absl::StatusOr<KvCache> ComposeCaches(const std::vector<ComposePart>& parts, const Rope& rope);

// For braced lists of caches, ComposeCaches({&a, &b}, rope): without it such a call would be ambiguous,
// since a std::vector<ComposePart> can also be built from two pointers (as an iterator range).
inline absl::StatusOr<KvCache> ComposeCaches(std::initializer_list<const KvCache*> caches, const Rope& rope) {
  return ComposeCaches(std::vector<const KvCache*>(caches), rope);
}

// A deep copy of `cache` in fresh storage, converted to `dtype` on `device`. Every attribute is kept:
// positions, next_position, key_rotation, model_fingerprint. RESOURCE_EXHAUSTED when memory runs out.
absl::StatusOr<KvCache> CopyCache(const KvCache& cache, torch::ScalarType dtype, torch::Device device);
// Same dtype and device as the source: KvCache::Clone with a status.
absl::StatusOr<KvCache> CopyCache(const KvCache& cache);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_KV_COMPOSE_H_
