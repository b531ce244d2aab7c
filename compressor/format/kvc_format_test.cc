#include <xxhash.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "compressor/format/kvc_layout.h"
#include "compressor/format/kvc_reader.h"
#include "compressor/format/kvc_writer.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

// Deterministic content: multiples of 1/4 in [-2, 2], exact in every float dtype, so that a reader's
// output can be compared exactly.
float Value(bool key, uint32_t l, uint32_t h, uint32_t t, uint32_t d) {
  const uint32_t x = (key ? 7 : 3) * l + 5 * h + 3 * t + d + (key ? 0 : 11);
  return static_cast<float>(static_cast<int>(x % 17) - 8) / 4.0f;
}
int32_t Position(uint32_t l, uint32_t h, uint32_t t) { return static_cast<int32_t>(3 * t + h + l); }
int8_t Quant(bool key, uint32_t l, uint32_t h, uint32_t t, uint32_t d) {
  return static_cast<int8_t>(static_cast<int>((key ? 31 : 17) * l + 13 * h + 7 * t + d) % 255 - 127);
}
float Scale(bool key, uint32_t l, uint32_t h, uint32_t i) { return 0.5f + 0.25f * static_cast<float>((l + h + i) % 5); }

uint16_t FloatToHalfExact(float f) {
  static const std::map<float, uint16_t> table = [] {
    std::map<float, uint16_t> m;
    for (uint32_t b = 0; b < 0x10000; ++b) {
      float x = HalfToFloat(static_cast<uint16_t>(b));
      if (std::isfinite(x) && !(x == 0 && std::signbit(x))) m.emplace(x, static_cast<uint16_t>(b));
    }
    return m;
  }();
  return table.at(f);
}
uint16_t FloatToBf16Exact(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>(bits >> 16);
}

struct Sample {
  KvcHeader header;
  std::vector<int32_t> positions;
  std::vector<std::string> keys, values;
  std::vector<std::vector<float>> key_scales, value_scales;
  std::vector<KvcLayerData> Layers() const {
    std::vector<KvcLayerData> out;
    for (size_t l = 0; l < keys.size(); ++l) out.push_back({keys[l], values[l], key_scales[l], value_scales[l]});
    return out;
  }
};

// Two layers, two heads of different lengths (the format allows per-head lengths), head_dim 8.
Sample MakeSample(KvcDtype dtype, KvcCodec codec, uint32_t base_len = 3) {
  Sample s;
  KvcHeader& h = s.header;
  h.num_layers = 2;
  h.kv_heads = 2;
  h.head_dim = 8;
  h.dtype = dtype;
  h.codec = codec;
  h.keys_compacted = true;
  h.tokens_in = 40;
  h.next_position = 9;
  h.fingerprint = std::string(64, 'a');
  h.fingerprint[0] = '0';
  h.metadata = {{"model", "golden"}, {"rope", {{"type", "default"}, {"theta", 10000.0}}},
                {"spec", {{"method", "finch"}, {"ratio", 4.0}}}};
  for (uint32_t l = 0; l < 2; ++l) {
    for (uint32_t hd = 0; hd < 2; ++hd) h.lengths.push_back(base_len + l + hd);
  }
  h.tokens_out = base_len + 2;
  for (uint32_t l = 0; l < 2; ++l) {
    std::string k, v;
    std::vector<float> ks, vs;
    for (uint32_t hd = 0; hd < 2; ++hd) {
      for (uint32_t t = 0; t < h.length(l, hd); ++t) {
        s.positions.push_back(Position(l, hd, t));
        if (dtype == KvcDtype::kInt8) vs.push_back(Scale(false, l, hd, t));
        for (uint32_t d = 0; d < 8; ++d) {
          for (bool key : {true, false}) {
            std::string& out = key ? k : v;
            const float x = Value(key, l, hd, t, d);
            switch (dtype) {
              case KvcDtype::kF32: out.append(reinterpret_cast<const char*>(&x), 4); break;
              case KvcDtype::kBF16: { uint16_t b = FloatToBf16Exact(x); out.append(reinterpret_cast<const char*>(&b), 2); break; }
              case KvcDtype::kF16: { uint16_t b = FloatToHalfExact(x); out.append(reinterpret_cast<const char*>(&b), 2); break; }
              case KvcDtype::kInt8: out.push_back(static_cast<char>(Quant(key, l, hd, t, d))); break;
            }
          }
        }
      }
      if (dtype == KvcDtype::kInt8) {
        for (uint32_t d = 0; d < 8; ++d) ks.push_back(Scale(true, l, hd, d));
      }
    }
    s.keys.push_back(k);
    s.values.push_back(v);
    s.key_scales.push_back(ks);
    s.value_scales.push_back(vs);
  }
  return s;
}

float Element(const KvcHeader& h, absl::string_view bytes, uint64_t i) {
  switch (h.dtype) {
    case KvcDtype::kF32: { float f; std::memcpy(&f, bytes.data() + 4 * i, 4); return f; }
    case KvcDtype::kBF16: { uint16_t b; std::memcpy(&b, bytes.data() + 2 * i, 2); return BFloat16ToFloat(b); }
    case KvcDtype::kF16: { uint16_t b; std::memcpy(&b, bytes.data() + 2 * i, 2); return HalfToFloat(b); }
    case KvcDtype::kInt8: return static_cast<float>(static_cast<int8_t>(bytes[i]));
  }
  return 0;
}

// Checks a reader's content against the formulas above, element by element.
void ExpectSampleContent(const KvcReader& r) {
  const KvcHeader& h = r.header();
  ASSERT_EQ(h.num_layers, 2u);
  ASSERT_EQ(h.kv_heads, 2u);
  ASSERT_EQ(h.head_dim, 8u);
  EXPECT_TRUE(h.keys_compacted);
  EXPECT_EQ(h.tokens_in, 40u);
  EXPECT_EQ(h.next_position, 9);
  EXPECT_EQ(h.metadata["model"], "golden");
  EXPECT_EQ(h.metadata["spec"]["method"], "finch");
  for (uint32_t l = 0; l < 2; ++l) {
    const KvcLayerView& view = r.layer(l);
    uint64_t row = 0;
    for (uint32_t hd = 0; hd < 2; ++hd) {
      auto pos = r.positions(l, hd);
      ASSERT_EQ(pos.size(), h.length(l, hd));
      for (uint32_t t = 0; t < pos.size(); ++t, ++row) {
        ASSERT_EQ(pos[t], Position(l, hd, t));
        if (h.dtype == KvcDtype::kInt8) {
          ASSERT_EQ(view.value_scales[row], Scale(false, l, hd, t));
        }
        for (uint32_t d = 0; d < 8; ++d) {
          const float want_k = h.dtype == KvcDtype::kInt8 ? Quant(true, l, hd, t, d) : Value(true, l, hd, t, d);
          const float want_v = h.dtype == KvcDtype::kInt8 ? Quant(false, l, hd, t, d) : Value(false, l, hd, t, d);
          ASSERT_EQ(Element(h, view.keys, row * 8 + d), want_k) << "layer " << l << " head " << hd << " t " << t;
          ASSERT_EQ(Element(h, view.values, row * 8 + d), want_v);
        }
      }
      if (h.dtype == KvcDtype::kInt8) {
        for (uint32_t d = 0; d < 8; ++d) ASSERT_EQ(view.key_scales[hd * 8 + d], Scale(true, l, hd, d));
      }
    }
  }
}

struct Variant {
  KvcDtype dtype;
  KvcCodec codec;
};
std::string VariantName(const Variant& v) { return absl::StrCat(KvcDtypeName(v.dtype), "_", KvcCodecName(v.codec)); }

class KvcFormatTest : public ::testing::TestWithParam<Variant> {
 protected:
  std::string Write() {
    Sample s = MakeSample(GetParam().dtype, GetParam().codec);
    auto bytes = SerializeKvc(s.header, s.positions, s.Layers());
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return bytes.ok() ? *bytes : std::string();
  }
};

TEST_P(KvcFormatTest, RoundTrip) {
  std::string bytes = Write();
  auto r = KvcReader::Open(bytes);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectSampleContent(**r);
  EXPECT_EQ((*r)->zero_copy(), GetParam().codec == KvcCodec::kNone);
  auto header = KvcReader::ReadHeader(bytes);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->lengths, (*r)->header().lengths);
}

TEST_P(KvcFormatTest, SerializationIsDeterministic) { EXPECT_EQ(Write(), Write()); }

TEST_P(KvcFormatTest, SectionsAreAligned) {
  std::string bytes = Write();
  // A copy at an odd address is still read (the reader realigns instead of misreading).
  std::string shifted = "x" + bytes;
  auto r = KvcReader::Open(absl::string_view(shifted).substr(1));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectSampleContent(**r);
}

TEST_P(KvcFormatTest, AFlippedByteInAnySectionIsDataLoss) {
  const std::string bytes = Write();
  auto h = KvcReader::ReadHeader(bytes);
  ASSERT_TRUE(h.ok());
  const auto g = kvc_layout::Geometry(h->metadata.dump().size(), h->lengths.size(), 1 + 2 * h->num_layers);
  // The header itself (fixed part, JSON, lengths, table), then the first, middle and last byte of each section.
  std::vector<uint64_t> targets = {9, 30, g.json_offset + 2, g.lengths_offset + 1, g.table_offset + 9};
  for (uint32_t i = 0; i < 1 + 2 * h->num_layers; ++i) {
    const uint64_t e = g.table_offset + kvc_layout::kSectionEntryBytes * i;
    const uint64_t off = kvc_layout::Get<uint64_t>(bytes.data(), e + 8);
    const uint64_t len = kvc_layout::Get<uint64_t>(bytes.data(), e + 16);
    if (len == 0) continue;
    targets.insert(targets.end(), {off, off + len / 2, off + len - 1});
  }
  for (uint64_t t : targets) {
    std::string bad = bytes;
    bad[t] ^= 0x20;
    auto r = KvcReader::Open(bad);
    ASSERT_FALSE(r.ok()) << "byte " << t;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << "byte " << t << ": " << r.status();
  }
}

TEST_P(KvcFormatTest, TruncationIsAnErrorNeverACrash) {
  const std::string bytes = Write();
  // Every eighth of the file, then every length up to the whole (the file is small).
  for (uint64_t n = 0; n < bytes.size(); ++n) {
    auto r = KvcReader::Open(absl::string_view(bytes.data(), n));
    ASSERT_FALSE(r.ok()) << n;
    const auto code = r.status().code();
    EXPECT_TRUE(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kInvalidArgument)
        << n << ": " << r.status();
    if (n % (bytes.size() / 8) == 0 && n >= 8) {
      EXPECT_EQ(code, absl::StatusCode::kDataLoss) << n << ": a cut inside a valid file reads as truncation";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, KvcFormatTest,
                         ::testing::Values(Variant{KvcDtype::kF32, KvcCodec::kNone}, Variant{KvcDtype::kF32, KvcCodec::kZstd},
                                           Variant{KvcDtype::kBF16, KvcCodec::kNone}, Variant{KvcDtype::kBF16, KvcCodec::kZstd},
                                           Variant{KvcDtype::kF16, KvcCodec::kNone}, Variant{KvcDtype::kF16, KvcCodec::kZstd},
                                           Variant{KvcDtype::kInt8, KvcCodec::kNone}, Variant{KvcDtype::kInt8, KvcCodec::kZstd}),
                         [](const auto& info) { return VariantName(info.param); });

// Rewrites a fixed header field and re-seals the header checksum, as a crafted (not corrupted) file would.
std::string Reseal(std::string bytes, uint64_t offset, const void* value, size_t n) {
  std::memcpy(bytes.data() + offset, value, n);
  const uint64_t end = kvc_layout::kPreambleBytes + kvc_layout::Get<uint32_t>(bytes.data(), 4);
  const uint64_t sum = XXH64(bytes.data(), end - 8, 0);
  std::memcpy(bytes.data() + end - 8, &sum, 8);
  return bytes;
}

TEST(KvcFormat, CraftedHeadersAreRefused) {
  Sample s = MakeSample(KvcDtype::kF32, KvcCodec::kNone);
  const std::string good = *SerializeKvc(s.header, s.positions, s.Layers());
  struct Case {
    uint64_t offset;
    uint32_t value;
    size_t n;
    const char* expect;
  };
  const Case cases[] = {
      {8, 2, 2, "unsupported version"},  {12, 0, 4, "num_layers"},       {12, 5000, 4, "num_layers"},
      {16, 0, 4, "kv_heads"},            {20, 100000, 4, "head_dim"},     {24, 9, 1, "dtype"},
      {25, 7, 1, "codec"},               {26, 3, 1, "key rotation"},      {27, 1, 1, "reserved"},
      {28, 100000, 4, "describe"},       {88, 7, 4, "sections"},          {12, 3, 4, "sections"},
  };
  for (const Case& c : cases) {
    auto r = KvcReader::Open(Reseal(good, c.offset, &c.value, c.n));
    ASSERT_FALSE(r.ok()) << c.expect;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status();
  }
  // A length that no longer matches its section.
  auto h = KvcReader::ReadHeader(good);
  const auto g = kvc_layout::Geometry(h->metadata.dump().size(), h->lengths.size(), 5);
  uint32_t len = 1000;
  auto r = KvcReader::Open(Reseal(good, g.lengths_offset, &len, 4));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  // Not a .kvc file at all.
  EXPECT_EQ(KvcReader::Open("GGUF and more bytes than a header").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvcReader::Open(good + "junk").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvcFormat, ZstdBombIsBounded) {
  Sample s = MakeSample(KvcDtype::kF32, KvcCodec::kZstd, 200);
  const std::string bytes = *SerializeKvc(s.header, s.positions, s.Layers());
  KvcReadOptions o;
  o.max_decoded_bytes = 1000;
  EXPECT_EQ(KvcReader::Open(bytes, o).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(KvcFormat, WriterRefusesInconsistentInput) {
  Sample s = MakeSample(KvcDtype::kF32, KvcCodec::kNone);
  auto layers = s.Layers();
  layers[1].keys.remove_suffix(4);
  auto r = SerializeKvc(s.header, s.positions, layers);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("layer 1"), std::string::npos) << r.status();
  std::vector<int32_t> few(s.positions.begin(), s.positions.end() - 1);
  EXPECT_EQ(SerializeKvc(s.header, few, s.Layers()).status().code(), absl::StatusCode::kInvalidArgument);
  KvcHeader bad = s.header;
  bad.fingerprint = "XYZ";
  EXPECT_EQ(SerializeKvc(bad, s.positions, s.Layers()).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<int32_t> negative = s.positions;
  negative[3] = -1;
  EXPECT_EQ(SerializeKvc(s.header, negative, s.Layers()).status().code(), absl::StatusCode::kInvalidArgument);
}

// Files written by format version 1.0 and committed: every later reader must still read them.
std::string GoldenDir() {
  const char* src = std::getenv("KVC_SOURCE_DIR");
  return absl::StrCat(src ? src : ".", "/tests/testdata/kvc");
}

TEST(KvcFormat, GoldenFilesStillRead) {
  for (const Variant& v : {Variant{KvcDtype::kF32, KvcCodec::kNone}, Variant{KvcDtype::kBF16, KvcCodec::kZstd},
                           Variant{KvcDtype::kF16, KvcCodec::kNone}, Variant{KvcDtype::kInt8, KvcCodec::kZstd}}) {
    const std::string path = absl::StrCat(GoldenDir(), "/v1_", VariantName(v), ".kvc");
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in) << "missing golden file " << path;
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string bytes = ss.str();
    auto r = KvcReader::Open(bytes);
    ASSERT_TRUE(r.ok()) << path << ": " << r.status();
    EXPECT_EQ((*r)->header().version_major, 1);
    EXPECT_EQ((*r)->header().version_minor, 0);
    EXPECT_EQ((*r)->header().dtype, v.dtype);
    EXPECT_EQ((*r)->header().codec, v.codec);
    ExpectSampleContent(**r);
  }
}

// Regenerates the golden files: KVC_WRITE_GOLDEN=1 kvc_format_test --gtest_also_run_disabled_tests
// --gtest_filter='*WriteGolden*'. Only ever for a new format version; old files must stay as they are.
TEST(KvcFormat, DISABLED_WriteGolden) {
  ASSERT_NE(std::getenv("KVC_WRITE_GOLDEN"), nullptr);
  for (const Variant& v : {Variant{KvcDtype::kF32, KvcCodec::kNone}, Variant{KvcDtype::kBF16, KvcCodec::kZstd},
                           Variant{KvcDtype::kF16, KvcCodec::kNone}, Variant{KvcDtype::kInt8, KvcCodec::kZstd}}) {
    Sample s = MakeSample(v.dtype, v.codec);
    auto bytes = SerializeKvc(s.header, s.positions, s.Layers());
    ASSERT_TRUE(bytes.ok());
    std::ofstream(absl::StrCat(GoldenDir(), "/v1_", VariantName(v), ".kvc"), std::ios::binary) << *bytes;
  }
}

}  // namespace
}  // namespace kvc
