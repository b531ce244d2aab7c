// Reads .kvc v1 bytes (docs/kvc-format.md) without LibTorch and, for the codec "none", without copying:
// the views point into the caller's buffer (a memory map, or bytes fetched from a store).
//
// Open validates everything before it touches section memory: the magic, the header checksum, every field
// against its bounds, every section offset and size against the buffer size, and (unless turned off) each
// section's xxhash64. Errors: INVALID_ARGUMENT (not a .kvc file, unsupported version, inconsistent header),
// DATA_LOSS (truncated, or a checksum mismatch), RESOURCE_EXHAUSTED (decoded size over the limit).
//
// Ownership: the reader borrows `bytes`, which must outlive it and every view it returns; zstd sections are
// decompressed into buffers the reader owns. Thread safety: immutable after Open; concurrent reads are fine.
#ifndef KVC_COMPRESSOR_FORMAT_KVC_READER_H_
#define KVC_COMPRESSOR_FORMAT_KVC_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compressor/format/kvc_header.h"

namespace kvc {

struct KvcReadOptions {
  bool verify_checksums = true;
  // Upper bound on the decoded size of all sections: a small compressed file cannot make the reader
  // allocate more than this.
  uint64_t max_decoded_bytes = uint64_t{64} << 30;
};

// One layer as stored: heads in order, each head's entries in cache order.
struct KvcLayerView {
  absl::string_view keys;    // [sum_h len(layer, h), head_dim] elements of the header's dtype
  absl::string_view values;  // same shape
  absl::Span<const float> key_scales;    // int8: [kv_heads, head_dim]; empty otherwise
  absl::Span<const float> value_scales;  // int8: [sum_h len(layer, h)]; empty otherwise
};

class KvcReader {
 public:
  static absl::StatusOr<std::unique_ptr<KvcReader>> Open(absl::string_view bytes, const KvcReadOptions& options = {});
  // Only the header: checks the preamble, the header checksum and the fields, not the sections.
  static absl::StatusOr<KvcHeader> ReadHeader(absl::string_view bytes);

  const KvcHeader& header() const { return header_; }
  // Original positions of every entry, [layer][head][entry] flattened.
  absl::Span<const int32_t> positions() const { return positions_; }
  // Positions of one (layer, head): header().length(layer, head) entries.
  absl::Span<const int32_t> positions(uint32_t layer, uint32_t head) const;
  const KvcLayerView& layer(uint32_t l) const { return layers_[l]; }
  // Bytes of the whole file and of its sections as stored.
  uint64_t file_bytes() const { return file_bytes_; }
  // Whether the views point into the caller's buffer (true unless a section had to be decompressed or
  // realigned).
  bool zero_copy() const { return owned_.empty(); }

 private:
  KvcReader() = default;
  KvcHeader header_;
  absl::Span<const int32_t> positions_;
  std::vector<uint64_t> head_offsets_;  // prefix sums of lengths, per (layer, head)
  std::vector<KvcLayerView> layers_;
  std::vector<std::unique_ptr<char[]>> owned_;  // decompressed or realigned sections
  uint64_t file_bytes_ = 0;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_FORMAT_KVC_READER_H_
