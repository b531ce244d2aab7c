// Byte layout shared by the .kvc writer and reader (internal; docs/kvc-format.md is the spec).
#ifndef KVC_COMPRESSOR_FORMAT_KVC_LAYOUT_H_
#define KVC_COMPRESSOR_FORMAT_KVC_LAYOUT_H_

#include <cstdint>
#include <cstring>
#include <string>

namespace kvc::kvc_layout {

// Preamble: magic[4], u32 header_bytes (the header block that follows, its checksum included).
inline constexpr uint64_t kPreambleBytes = 8;
// Fixed part of the header block, from offset 8 to the metadata JSON (see docs/kvc-format.md).
inline constexpr uint64_t kFixedBytes = 88;
inline constexpr uint64_t kSectionEntryBytes = 40;  // u32 kind, u32 layer, u64 offset, stored, raw, xxhash64

inline uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Offsets inside the header block (relative to the file start) of its variable parts.
struct HeaderGeometry {
  uint64_t json_offset, lengths_offset, table_offset, checksum_offset, end;
};
inline HeaderGeometry Geometry(uint64_t json_bytes, uint64_t num_lengths, uint64_t num_sections) {
  HeaderGeometry g;
  g.json_offset = kPreambleBytes + kFixedBytes;
  g.lengths_offset = AlignUp(g.json_offset + json_bytes, 8);
  g.table_offset = AlignUp(g.lengths_offset + 4 * num_lengths, 8);
  g.checksum_offset = g.table_offset + kSectionEntryBytes * num_sections;
  g.end = g.checksum_offset + 8;
  return g;
}

template <typename T>
void Put(std::string& out, uint64_t offset, T v) {
  std::memcpy(out.data() + offset, &v, sizeof v);  // the format is little-endian, as is every host we build for
}
template <typename T>
T Get(const char* p, uint64_t offset) {
  T v;
  std::memcpy(&v, p + offset, sizeof v);
  return v;
}

}  // namespace kvc::kvc_layout

#endif  // KVC_COMPRESSOR_FORMAT_KVC_LAYOUT_H_
