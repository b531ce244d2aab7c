// The key/value cache of a decoder: per layer, K and V of shape [kv_heads, len, head_dim] plus the original
// token position of every kept entry, [kv_heads, len] int64.
//
// Entries are ordered: attention treats every cached entry as preceding the tokens of the next chunk,
// whatever their positions (compression may compact positions).
//
// Ragged caches. Head- and layer-adaptive budgets keep different numbers of entries per head and per layer.
// Layers may hold different lengths. Within a layer, K and V stay one [kv_heads, len, head_dim] tensor, so
// that attention remains one batched call: a head that keeps fewer entries than the layer's longest is
// padded, and Valid(layer) marks which slots are real. Padding slots have position -1 and are invisible to
// attention (the model masks them per head); they cost memory only up to the layer's longest head, and a
// .kvc file stores none of them. A layer without padding has no Valid tensor at all, so dense caches pay
// nothing for this.
//
// Storage grows geometrically, so appending chunk after chunk costs amortized O(len). Views returned by
// Keys()/Values() are invalidated by the next Append or Reset on that layer.
//
// Ownership: a KvCache owns its storage. It is move-only, because a member-wise copy would share the tensors
// (and their spare capacity) with the original, so that appending to one would write into the other; an
// independent copy is explicit: Clone(), or CopyCache (compose.h) to convert dtype/device with a status.
//
// Thread safety: not thread-safe; one forward pass at a time. Concurrent reads (Keys, Clone, ...) of a cache
// nobody modifies are safe.
#ifndef KVC_COMPRESSOR_KV_KV_CACHE_H_
#define KVC_COMPRESSOR_KV_KV_CACHE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace kvc {

// Where each key's rotary embedding was applied. kOriginal: at the entry's recorded original position
// (plain prefill, SnapKV-style selection). kCompacted: at the entry's index, entry j at position j (Finch
// with re-rotation, truncation). Re-rotation and composition of caches need to know which.
enum class KeyRotation { kOriginal, kCompacted };

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  torch::ScalarType dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
};

class KvCache {
 public:
  explicit KvCache(const KvCacheShape& shape);
  KvCache(KvCache&&) = default;
  KvCache& operator=(KvCache&&) = default;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // A deep copy in fresh storage of the same dtype and device, with every attribute (positions,
  // next_position, key_rotation, model_fingerprint, peak_length). Throws c10::Error when memory runs out,
  // like the other tensor operations here; CopyCache returns RESOURCE_EXHAUSTED instead.
  KvCache Clone() const;

  const KvCacheShape& shape() const { return shape_; }
  int64_t num_layers() const { return shape_.num_layers; }
  // Slots per head in `layer` (entries plus padding).
  int64_t length(int64_t layer) const { return layers_[layer].length; }
  // Slots per head of the longest layer; for a dense cache, its entries per head (equal in every layer).
  int64_t length() const;
  // True when some layer holds padding or layers differ in length.
  bool ragged() const;
  // [kv_heads, length(layer)] bool, true for real entries; an undefined tensor when the layer has no padding.
  torch::Tensor Valid(int64_t layer) const;
  // Real entries of each head of `layer`.
  std::vector<int64_t> HeadLengths(int64_t layer) const;
  // Real entries over all layers and heads.
  int64_t Entries() const;
  // Largest length ever held by any layer since construction: the memory high-water mark.
  int64_t peak_length() const { return peak_length_; }

  // [kv_heads, len, head_dim] views.
  torch::Tensor Keys(int64_t layer) const;
  torch::Tensor Values(int64_t layer) const;
  // [kv_heads, len] int64 original positions.
  torch::Tensor Positions(int64_t layer) const;

  // k, v: [kv_heads, n, head_dim]; positions: [n] (shared by all heads) or [kv_heads, n]; valid: undefined
  // (all real) or [kv_heads, n] bool, false for padding (whose positions are recorded as -1).
  void Append(int64_t layer, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& positions,
              const torch::Tensor& valid = {});
  // Replaces a layer's contents (after selection); same shapes as Append.
  void Reset(int64_t layer, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& positions,
             const torch::Tensor& valid = {});
  // Overwrites the recorded original positions of entries [begin, begin + n) in every layer with
  // positions [n] (shared by heads). Used when keys were computed at compacted rotary positions.
  void SetPositions(int64_t begin, const torch::Tensor& positions);
  // Drops entries past `len` in every layer (e.g. the query's KV between Finch chunks).
  void Truncate(int64_t len);
  // Drops slots past `len` in one layer (e.g. trailing padding, or a failed forward pass undone).
  void TruncateLayer(int64_t layer, int64_t len);
  void Clear() { Truncate(0); }

  // Position at which the next token continues; maintained by whoever feeds the cache.
  int64_t next_position() const { return next_position_; }
  void set_next_position(int64_t p) { next_position_ = p; }

  // Fingerprint of the model that computed the entries (see compressor/model/fingerprint.h); a cache is only
  // valid with that model. Empty when unknown (e.g. a cache built by hand in a test).
  const std::string& model_fingerprint() const { return model_fingerprint_; }
  void set_model_fingerprint(std::string f) { model_fingerprint_ = std::move(f); }

  KeyRotation key_rotation() const { return key_rotation_; }
  void set_key_rotation(KeyRotation r) { key_rotation_ = r; }
  // [kv_heads, len] int64: the rotary position each key of `layer` currently carries (kCompacted: its slot
  // index, padding included).
  torch::Tensor RotaryPositions(int64_t layer) const;

  // Bytes of K and V actually held (not capacity), padding included.
  int64_t Bytes() const;

 private:
  struct Layer {
    torch::Tensor k, v;       // [kv_heads, capacity, head_dim]
    torch::Tensor positions;  // [kv_heads, capacity]
    torch::Tensor valid;      // [kv_heads, capacity] bool; undefined while the layer has no padding
    int64_t length = 0;
  };
  void Reserve(Layer& layer, int64_t capacity);

  KvCacheShape shape_;
  std::vector<Layer> layers_;
  int64_t next_position_ = 0;
  int64_t peak_length_ = 0;
  KeyRotation key_rotation_ = KeyRotation::kOriginal;
  std::string model_fingerprint_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_KV_KV_CACHE_H_
