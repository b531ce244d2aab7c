#include "compressor/format/kvc_reader.h"

#include <xxhash.h>
#include <zstd.h>

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "compressor/format/kvc_layout.h"

namespace kvc {
namespace {

using kvc_layout::Get;
using u128 = unsigned __int128;

struct Section {
  uint32_t kind, layer;
  uint64_t offset, stored, raw, hash;
};

std::string SectionName(const Section& s) {
  switch (static_cast<KvcSectionKind>(s.kind)) {
    case KvcSectionKind::kPositions: return "positions";
    case KvcSectionKind::kKeys: return absl::StrCat("keys of layer ", s.layer);
    case KvcSectionKind::kValues: return absl::StrCat("values of layer ", s.layer);
  }
  return absl::StrCat("section kind ", s.kind);
}

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(absl::StrCat(".kvc: ", what)); }
absl::Status Lost(absl::string_view what) { return absl::DataLossError(absl::StrCat(".kvc: ", what)); }

// Parses and checks the header block; `sections` gets the section table (not yet checked against the data).
absl::Status ParseHeader(absl::string_view bytes, KvcHeader& h, std::vector<Section>& sections) {
  const char* p = bytes.data();
  const uint64_t size = bytes.size();
  if (size < 4 || std::memcmp(p, kKvcMagic, 4) != 0) {
    if (size < 4 && std::memcmp(p, kKvcMagic, size) == 0) return Lost(absl::StrCat("truncated at ", size, " bytes"));
    return Invalid("not a .kvc file (bad magic)");
  }
  if (size < kvc_layout::kPreambleBytes + kvc_layout::kFixedBytes) {
    return Lost(absl::StrCat("truncated header: the file has ", size, " bytes"));
  }
  const uint64_t header_end = kvc_layout::kPreambleBytes + Get<uint32_t>(p, 4);
  if (header_end > size) {
    return Lost(absl::StrCat("truncated header: it ends at byte ", header_end, " but the file has ", size));
  }
  if (header_end < kvc_layout::kPreambleBytes + kvc_layout::kFixedBytes + 8) {
    return Invalid(absl::StrCat("header of ", header_end, " bytes is too short"));
  }
  if (XXH64(p, header_end - 8, 0) != Get<uint64_t>(p, header_end - 8)) {
    return Lost("header checksum mismatch");
  }
  h.version_major = Get<uint16_t>(p, 8);
  h.version_minor = Get<uint16_t>(p, 10);
  if (h.version_major != kKvcVersionMajor) {
    return Invalid(absl::StrCat("unsupported version ", h.version_major, ".", h.version_minor, " (this reader reads ",
                                kKvcVersionMajor, ".x)"));
  }
  h.num_layers = Get<uint32_t>(p, 12);
  h.kv_heads = Get<uint32_t>(p, 16);
  h.head_dim = Get<uint32_t>(p, 20);
  if (h.num_layers == 0 || h.num_layers > kKvcMaxLayers) return Invalid(absl::StrCat("num_layers ", h.num_layers, " out of range"));
  if (h.kv_heads == 0 || h.kv_heads > kKvcMaxKvHeads) return Invalid(absl::StrCat("kv_heads ", h.kv_heads, " out of range"));
  if (h.head_dim == 0 || h.head_dim > kKvcMaxHeadDim) return Invalid(absl::StrCat("head_dim ", h.head_dim, " out of range"));
  const uint8_t dtype = Get<uint8_t>(p, 24), codec = Get<uint8_t>(p, 25), rotation = Get<uint8_t>(p, 26);
  if (!IsValidKvcDtype(dtype)) return Invalid(absl::StrCat("unknown dtype ", dtype));
  if (!IsValidKvcCodec(codec)) return Invalid(absl::StrCat("unknown codec ", codec));
  if (rotation > 1) return Invalid(absl::StrCat("unknown key rotation ", rotation));
  if (Get<uint8_t>(p, 27) != 0 || Get<uint32_t>(p, 92) != 0) return Invalid("reserved header bytes are not zero");
  h.dtype = static_cast<KvcDtype>(dtype);
  h.codec = static_cast<KvcCodec>(codec);
  h.keys_compacted = rotation == 1;
  const uint64_t json_bytes = Get<uint32_t>(p, 28);
  h.tokens_in = Get<uint64_t>(p, 32);
  h.tokens_out = Get<uint64_t>(p, 40);
  h.next_position = Get<int64_t>(p, 48);
  if (h.next_position < 0) return Invalid("negative next_position");
  h.fingerprint = absl::BytesToHexString(absl::string_view(p + 56, 32));
  const uint64_t num_sections = Get<uint32_t>(p, 88);
  if (num_sections != 1 + 2 * static_cast<uint64_t>(h.num_layers)) {
    return Invalid(absl::StrCat(num_sections, " sections, expected ", 1 + 2 * static_cast<uint64_t>(h.num_layers)));
  }
  const uint64_t num_lengths = static_cast<uint64_t>(h.num_layers) * h.kv_heads;
  const auto g = kvc_layout::Geometry(json_bytes, num_lengths, num_sections);
  if (g.end != header_end) {
    return Invalid(absl::StrCat("header is ", header_end, " bytes but its fields describe ", g.end));
  }
  h.metadata = nlohmann::json::parse(p + g.json_offset, p + g.json_offset + json_bytes, nullptr, /*allow_exceptions=*/false);
  if (h.metadata.is_discarded() || !h.metadata.is_object()) return Invalid("metadata is not a JSON object");
  h.lengths.resize(num_lengths);
  for (uint64_t i = 0; i < num_lengths; ++i) {
    h.lengths[i] = Get<uint32_t>(p, g.lengths_offset + 4 * i);
    if (h.lengths[i] > (uint32_t{1} << 31)) return Invalid(absl::StrCat("length ", h.lengths[i], " out of range"));
  }
  sections.resize(num_sections);
  for (uint64_t i = 0; i < num_sections; ++i) {
    const uint64_t e = g.table_offset + kvc_layout::kSectionEntryBytes * i;
    sections[i] = {Get<uint32_t>(p, e), Get<uint32_t>(p, e + 4), Get<uint64_t>(p, e + 8),
                   Get<uint64_t>(p, e + 16), Get<uint64_t>(p, e + 24), Get<uint64_t>(p, e + 32)};
  }
  return absl::OkStatus();
}

// The size a section must have decoded, from the header; computed wide so that no field can overflow it.
u128 ExpectedRaw(const KvcHeader& h, uint64_t i) {
  if (i == 0) return static_cast<u128>(h.TotalEntries()) * 4;
  const uint32_t layer = static_cast<uint32_t>((i - 1) / 2);
  const bool keys = (i - 1) % 2 == 0;
  const u128 elems = static_cast<u128>(h.LayerEntries(layer)) * h.head_dim;
  u128 scales = 0;
  if (h.dtype == KvcDtype::kInt8) scales = keys ? static_cast<u128>(h.kv_heads) * h.head_dim : h.LayerEntries(layer);
  return elems * KvcDtypeSize(h.dtype) + scales * 4;
}

}  // namespace

absl::StatusOr<KvcHeader> KvcReader::ReadHeader(absl::string_view bytes) {
  KvcHeader h;
  std::vector<Section> sections;
  if (absl::Status s = ParseHeader(bytes, h, sections); !s.ok()) return s;
  return h;
}

absl::StatusOr<std::unique_ptr<KvcReader>> KvcReader::Open(absl::string_view bytes, const KvcReadOptions& options) {
  auto r = std::unique_ptr<KvcReader>(new KvcReader());
  std::vector<Section> sections;
  if (absl::Status s = ParseHeader(bytes, r->header_, sections); !s.ok()) return s;
  const KvcHeader& h = r->header_;
  r->file_bytes_ = bytes.size();

  // Every section: in its expected place in the order, aligned, inside the file, of the size the header
  // implies, and after the previous one.
  u128 decoded_total = 0;
  uint64_t min_offset = kvc_layout::kPreambleBytes + Get<uint32_t>(bytes.data(), 4);
  for (uint64_t i = 0; i < sections.size(); ++i) {
    const Section& s = sections[i];
    const uint32_t want_kind = i == 0 ? 0 : ((i - 1) % 2 == 0 ? 1 : 2);
    const uint32_t want_layer = i == 0 ? 0 : static_cast<uint32_t>((i - 1) / 2);
    if (s.kind != want_kind || s.layer != want_layer) {
      return Invalid(absl::StrCat("section ", i, " is kind ", s.kind, " of layer ", s.layer, ", expected kind ",
                                  want_kind, " of layer ", want_layer));
    }
    if (s.offset % kKvcAlignment != 0 || s.offset < min_offset) {
      return Invalid(absl::StrCat(SectionName(s), ": misplaced at offset ", s.offset));
    }
    if (s.stored > bytes.size() || s.offset > bytes.size() - s.stored) {
      return Lost(absl::StrCat("truncated: ", SectionName(s), " (", s.stored, " bytes at offset ", s.offset,
                               ") runs past the end of the file (", bytes.size(), " bytes)"));
    }
    const u128 expected = ExpectedRaw(h, i);
    if (s.raw != expected) {
      return Invalid(absl::StrCat(SectionName(s), ": ", s.raw, " bytes, which the header's lengths do not imply"));
    }
    if (h.codec == KvcCodec::kNone && s.stored != s.raw) {
      return Invalid(absl::StrCat(SectionName(s), ": stored ", s.stored, " bytes but holds ", s.raw, " uncompressed"));
    }
    decoded_total += expected;
    min_offset = s.offset + s.stored;
  }
  if (decoded_total > options.max_decoded_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(".kvc: decodes to more than the limit of ",
                                                     options.max_decoded_bytes, " bytes"));
  }
  if (sections.back().offset + sections.back().stored != bytes.size()) {
    return Invalid(absl::StrCat("trailing bytes: the last section ends at ", sections.back().offset + sections.back().stored,
                                " of ", bytes.size()));
  }
  if (options.verify_checksums) {
    for (const Section& s : sections) {
      if (XXH64(bytes.data() + s.offset, s.stored, 0) != s.hash) return Lost(absl::StrCat("checksum mismatch in ", SectionName(s)));
    }
  }

  // Views; decompress or realign where the bytes cannot be used in place.
  const bool aligned = reinterpret_cast<uintptr_t>(bytes.data()) % alignof(double) == 0;
  std::vector<absl::string_view> data(sections.size());
  for (uint64_t i = 0; i < sections.size(); ++i) {
    const Section& s = sections[i];
    absl::string_view stored(bytes.data() + s.offset, s.stored);
    if (h.codec == KvcCodec::kZstd) {
      const unsigned long long content = ZSTD_getFrameContentSize(stored.data(), stored.size());
      if (content != s.raw) return Lost(absl::StrCat(SectionName(s), ": zstd frame does not hold ", s.raw, " bytes"));
      auto buf = std::make_unique<char[]>(std::max<uint64_t>(s.raw, 1));
      const size_t n = ZSTD_decompress(buf.get(), s.raw, stored.data(), stored.size());
      if (ZSTD_isError(n) || n != s.raw) {
        return Lost(absl::StrCat(SectionName(s), ": zstd: ", ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short frame"));
      }
      data[i] = absl::string_view(buf.get(), s.raw);
      r->owned_.push_back(std::move(buf));
    } else if (!aligned && s.raw > 0) {
      auto buf = std::make_unique<char[]>(s.raw);
      std::memcpy(buf.get(), stored.data(), s.raw);
      data[i] = absl::string_view(buf.get(), s.raw);
      r->owned_.push_back(std::move(buf));
    } else {
      data[i] = stored;
    }
  }
  r->positions_ = absl::Span<const int32_t>(reinterpret_cast<const int32_t*>(data[0].data()), h.TotalEntries());
  for (int32_t pos : r->positions_) {
    if (pos < 0) return Invalid(absl::StrCat("negative original position ", pos));
  }
  r->head_offsets_.resize(h.lengths.size() + 1, 0);
  for (size_t i = 0; i < h.lengths.size(); ++i) r->head_offsets_[i + 1] = r->head_offsets_[i] + h.lengths[i];
  r->layers_.resize(h.num_layers);
  for (uint32_t l = 0; l < h.num_layers; ++l) {
    absl::string_view k = data[1 + 2 * l], v = data[2 + 2 * l];
    const uint64_t ks = KvcKeyScaleCount(h, l), vs = KvcValueScaleCount(h, l);
    KvcLayerView& view = r->layers_[l];
    view.key_scales = absl::Span<const float>(reinterpret_cast<const float*>(k.data()), ks);
    view.value_scales = absl::Span<const float>(reinterpret_cast<const float*>(v.data()), vs);
    view.keys = k.substr(ks * 4);
    view.values = v.substr(vs * 4);
  }
  return r;
}

absl::Span<const int32_t> KvcReader::positions(uint32_t layer, uint32_t head) const {
  const size_t i = static_cast<size_t>(layer) * header_.kv_heads + head;
  return positions_.subspan(head_offsets_[i], header_.lengths[i]);
}

}  // namespace kvc
