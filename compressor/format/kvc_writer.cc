#include "compressor/format/kvc_writer.h"

#include <xxhash.h>
#include <zstd.h>

#include "absl/algorithm/container.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "compressor/format/kvc_layout.h"

namespace kvc {
namespace {

using kvc_layout::Put;

// A section's content before the codec: its pieces in order (the int8 scales lead).
struct SectionSource {
  KvcSectionKind kind;
  uint32_t layer;
  std::vector<absl::string_view> pieces;
  uint64_t raw_bytes = 0;
};

absl::string_view Bytes(const void* p, size_t n) { return absl::string_view(static_cast<const char*>(p), n); }

absl::Status CheckHeader(const KvcHeader& h, size_t num_layers, size_t num_positions) {
  if (h.num_layers == 0 || h.num_layers > kKvcMaxLayers) {
    return absl::InvalidArgumentError(absl::StrCat("num_layers: ", h.num_layers, " is outside [1, ", kKvcMaxLayers, "]"));
  }
  if (h.kv_heads == 0 || h.kv_heads > kKvcMaxKvHeads) {
    return absl::InvalidArgumentError(absl::StrCat("kv_heads: ", h.kv_heads, " is outside [1, ", kKvcMaxKvHeads, "]"));
  }
  if (h.head_dim == 0 || h.head_dim > kKvcMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("head_dim: ", h.head_dim, " is outside [1, ", kKvcMaxHeadDim, "]"));
  }
  if (h.lengths.size() != static_cast<size_t>(h.num_layers) * h.kv_heads) {
    return absl::InvalidArgumentError(absl::StrCat("lengths: ", h.lengths.size(), " entries, expected num_layers * kv_heads = ",
                                                   static_cast<uint64_t>(h.num_layers) * h.kv_heads));
  }
  if (num_layers != h.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layers: ", num_layers, " given, header says ", h.num_layers));
  }
  if (num_positions != h.TotalEntries()) {
    return absl::InvalidArgumentError(
        absl::StrCat("positions: ", num_positions, " given, the lengths add up to ", h.TotalEntries()));
  }
  if (h.fingerprint.size() != 64 || !absl::c_all_of(h.fingerprint, [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return absl::InvalidArgumentError("fingerprint: expected 64 lowercase hex characters");
  }
  if (!h.metadata.is_object()) return absl::InvalidArgumentError("metadata: must be a JSON object");
  if (h.next_position < 0) return absl::InvalidArgumentError("next_position: negative");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> SerializeKvc(const KvcHeader& header, absl::Span<const int32_t> positions,
                                         const std::vector<KvcLayerData>& layers, const KvcWriteOptions& options) {
  if (absl::Status s = CheckHeader(header, layers.size(), positions.size()); !s.ok()) return s;
  for (int32_t p : positions) {
    if (p < 0) return absl::InvalidArgumentError(absl::StrCat("positions: negative position ", p));
  }

  std::vector<SectionSource> sections;
  sections.push_back({KvcSectionKind::kPositions, 0, {Bytes(positions.data(), positions.size() * sizeof(int32_t))}});
  const bool int8 = header.dtype == KvcDtype::kInt8;
  for (uint32_t l = 0; l < header.num_layers; ++l) {
    const KvcLayerData& d = layers[l];
    const uint64_t elems = header.LayerEntries(l) * header.head_dim;
    const uint64_t data_bytes = elems * KvcDtypeSize(header.dtype);
    if (d.keys.size() != data_bytes || d.values.size() != data_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", l, ": keys/values hold ", d.keys.size(), "/",
                                                     d.values.size(), " bytes, expected ", data_bytes));
    }
    if (d.key_scales.size() != KvcKeyScaleCount(header, l) || d.value_scales.size() != KvcValueScaleCount(header, l)) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", l, ": ", d.key_scales.size(), " key and ",
                                                     d.value_scales.size(), " value scales, expected ",
                                                     KvcKeyScaleCount(header, l), " and ", KvcValueScaleCount(header, l)));
    }
    SectionSource k{KvcSectionKind::kKeys, l, {}};
    SectionSource v{KvcSectionKind::kValues, l, {}};
    if (int8) {
      k.pieces.push_back(Bytes(d.key_scales.data(), d.key_scales.size() * sizeof(float)));
      v.pieces.push_back(Bytes(d.value_scales.data(), d.value_scales.size() * sizeof(float)));
    }
    k.pieces.push_back(d.keys);
    v.pieces.push_back(d.values);
    sections.push_back(std::move(k));
    sections.push_back(std::move(v));
  }

  // Apply the codec first: the section table needs the stored sizes.
  std::vector<std::string> compressed(sections.size());
  std::vector<uint64_t> stored(sections.size());
  for (size_t i = 0; i < sections.size(); ++i) {
    for (absl::string_view p : sections[i].pieces) sections[i].raw_bytes += p.size();
    if (header.codec == KvcCodec::kZstd) {
      std::string joined;
      joined.reserve(sections[i].raw_bytes);
      for (absl::string_view p : sections[i].pieces) joined.append(p.data(), p.size());
      compressed[i].resize(ZSTD_compressBound(joined.size()));
      size_t n = ZSTD_compress(compressed[i].data(), compressed[i].size(), joined.data(), joined.size(),
                               options.zstd_level);
      if (ZSTD_isError(n)) return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(n)));
      compressed[i].resize(n);
      sections[i].pieces = {compressed[i]};
      stored[i] = n;
    } else {
      stored[i] = sections[i].raw_bytes;
    }
  }

  const std::string json = header.metadata.dump();  // nlohmann objects keep keys sorted: canonical
  const auto g = kvc_layout::Geometry(json.size(), header.lengths.size(), sections.size());
  std::vector<uint64_t> offsets(sections.size());
  uint64_t end = kvc_layout::AlignUp(g.end, kKvcAlignment);
  for (size_t i = 0; i < sections.size(); ++i) {
    offsets[i] = end;
    end = kvc_layout::AlignUp(end + stored[i], kKvcAlignment);
  }
  const uint64_t file_bytes = sections.empty() ? g.end : offsets.back() + stored.back();

  std::string out(file_bytes, '\0');
  std::memcpy(out.data(), kKvcMagic, 4);
  Put<uint32_t>(out, 4, static_cast<uint32_t>(g.end - kvc_layout::kPreambleBytes));
  Put<uint16_t>(out, 8, header.version_major);
  Put<uint16_t>(out, 10, header.version_minor);
  Put<uint32_t>(out, 12, header.num_layers);
  Put<uint32_t>(out, 16, header.kv_heads);
  Put<uint32_t>(out, 20, header.head_dim);
  Put<uint8_t>(out, 24, static_cast<uint8_t>(header.dtype));
  Put<uint8_t>(out, 25, static_cast<uint8_t>(header.codec));
  Put<uint8_t>(out, 26, header.keys_compacted ? 1 : 0);
  Put<uint32_t>(out, 28, static_cast<uint32_t>(json.size()));
  Put<uint64_t>(out, 32, header.tokens_in);
  Put<uint64_t>(out, 40, header.tokens_out);
  Put<int64_t>(out, 48, header.next_position);
  const std::string fp = absl::HexStringToBytes(header.fingerprint);
  std::memcpy(out.data() + 56, fp.data(), 32);
  Put<uint32_t>(out, 88, static_cast<uint32_t>(sections.size()));
  std::memcpy(out.data() + g.json_offset, json.data(), json.size());
  for (size_t i = 0; i < header.lengths.size(); ++i) Put<uint32_t>(out, g.lengths_offset + 4 * i, header.lengths[i]);
  for (size_t i = 0; i < sections.size(); ++i) {
    char* dst = out.data() + offsets[i];
    for (absl::string_view p : sections[i].pieces) {
      std::memcpy(dst, p.data(), p.size());
      dst += p.size();
    }
    const uint64_t e = g.table_offset + kvc_layout::kSectionEntryBytes * i;
    Put<uint32_t>(out, e, static_cast<uint32_t>(sections[i].kind));
    Put<uint32_t>(out, e + 4, sections[i].layer);
    Put<uint64_t>(out, e + 8, offsets[i]);
    Put<uint64_t>(out, e + 16, stored[i]);
    Put<uint64_t>(out, e + 24, sections[i].raw_bytes);
    Put<uint64_t>(out, e + 32, XXH64(out.data() + offsets[i], stored[i], 0));
  }
  Put<uint64_t>(out, g.checksum_offset, XXH64(out.data(), g.checksum_offset, 0));
  return out;
}

}  // namespace kvc
