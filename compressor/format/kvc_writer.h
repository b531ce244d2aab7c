// Serializes a compressed KV cache into .kvc v1 bytes (docs/kvc-format.md). Torch-free: the caller hands
// over K/V already converted to the header's dtype (the torch adapter in kv_cache_adapter.h does that).
//
// Thread safety: a pure function; concurrent calls are fine.
#ifndef KVC_COMPRESSOR_FORMAT_KVC_WRITER_H_
#define KVC_COMPRESSOR_FORMAT_KVC_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compressor/format/kvc_header.h"

namespace kvc {

// One layer's payload, heads in order, each head's entries in cache order.
struct KvcLayerData {
  absl::string_view keys;    // [sum_h len(layer, h), head_dim] elements of header.dtype, little-endian
  absl::string_view values;  // same shape
  // int8 only: keys one scale per (head, channel) [kv_heads, head_dim]; values one per entry
  // [sum_h len(layer, h)]. Dequantized x = q * scale.
  absl::Span<const float> key_scales;
  absl::Span<const float> value_scales;
};

struct KvcWriteOptions {
  int zstd_level = 3;
};

// `positions`: original token positions of every entry, [layer][head][entry] flattened (int32, >= 0).
// INVALID_ARGUMENT when sizes disagree with the header (names the layer and field); the result is complete
// or nothing.
absl::StatusOr<std::string> SerializeKvc(const KvcHeader& header, absl::Span<const int32_t> positions,
                                         const std::vector<KvcLayerData>& layers,
                                         const KvcWriteOptions& options = {});

}  // namespace kvc

#endif  // KVC_COMPRESSOR_FORMAT_KVC_WRITER_H_
