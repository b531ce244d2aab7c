// The header of a .kvc v1 file (docs/kvc-format.md is the normative spec): what a reader learns before it
// touches the K/V sections, and the section layout that writer and reader share.
#ifndef KVC_COMPRESSOR_FORMAT_KVC_HEADER_H_
#define KVC_COMPRESSOR_FORMAT_KVC_HEADER_H_

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "compressor/format/kvc_dtype.h"

namespace kvc {

inline constexpr char kKvcMagic[4] = {'K', 'V', 'C', '1'};
inline constexpr uint16_t kKvcVersionMajor = 1;
inline constexpr uint16_t kKvcVersionMinor = 0;
// Sections start at multiples of this, so that a memory-mapped file can be read in place by SIMD code.
inline constexpr uint64_t kKvcAlignment = 64;
// Sanity bounds a reader enforces before it allocates anything.
inline constexpr uint32_t kKvcMaxLayers = 1024;
inline constexpr uint32_t kKvcMaxKvHeads = 1024;
inline constexpr uint32_t kKvcMaxHeadDim = 4096;

enum class KvcSectionKind : uint32_t { kPositions = 0, kKeys = 1, kValues = 2 };

struct KvcHeader {
  uint16_t version_major = kKvcVersionMajor;
  uint16_t version_minor = kKvcVersionMinor;
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  KvcDtype dtype = KvcDtype::kF32;
  KvcCodec codec = KvcCodec::kNone;
  // Whether key j of every (layer, head) is rotated at position j (true) or at its recorded original
  // position (false). Readers that compose or extend caches must know which.
  bool keys_compacted = false;
  uint64_t tokens_in = 0;    // context tokens before compression
  uint64_t tokens_out = 0;   // entries kept per head (the largest per-head length)
  int64_t next_position = 0; // rotary position at which the next token continues
  std::string fingerprint;   // model fingerprint, 64 lowercase hex characters
  // Canonical JSON object (sorted keys): "model" (name), "rope" (type, theta, scaling), "spec" (method,
  // ratio or target_tokens, options). Unknown keys are preserved and ignored.
  nlohmann::json metadata = nlohmann::json::object();
  // Entries per (layer, head), row-major: lengths[layer * kv_heads + head].
  std::vector<uint32_t> lengths;

  uint32_t length(uint32_t layer, uint32_t head) const { return lengths[layer * kv_heads + head]; }
  // Sum of lengths over the heads of `layer`.
  uint64_t LayerEntries(uint32_t layer) const;
  uint64_t TotalEntries() const;
};

// Bytes of each section before compression, from the header alone (fields must already be in range).
uint64_t KvcPositionsBytes(const KvcHeader& h);
uint64_t KvcKeysBytes(const KvcHeader& h, uint32_t layer);
uint64_t KvcValuesBytes(const KvcHeader& h, uint32_t layer);
// Leading float32 scales inside an int8 K or V section (0 for other dtypes).
uint64_t KvcKeyScaleCount(const KvcHeader& h, uint32_t layer);
uint64_t KvcValueScaleCount(const KvcHeader& h, uint32_t layer);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_FORMAT_KVC_HEADER_H_
