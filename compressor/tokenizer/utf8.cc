#include "compressor/tokenizer/utf8.h"

#include "absl/strings/str_cat.h"

namespace kvc {
namespace {

// Valid range of the second byte for a given lead byte (Unicode Table 3-7); the rest are 80..BF.
bool SecondByteOk(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
  }
}

size_t SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Number of bytes from pos that form a well-formed prefix of a sequence (1 for an invalid lead byte).
size_t ValidPrefixLength(absl::string_view s, size_t pos, size_t* want) {
  uint8_t lead = static_cast<uint8_t>(s[pos]);
  *want = SequenceLength(lead);
  if (*want <= 1) return 1;
  size_t n = 1;
  while (n < *want && pos + n < s.size()) {
    uint8_t b = static_cast<uint8_t>(s[pos + n]);
    bool ok = n == 1 ? SecondByteOk(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t DecodeUtf8(absl::string_view s, size_t pos, uint32_t* cp) {
  size_t want = 0;
  size_t have = ValidPrefixLength(s, pos, &want);
  if (want == 0 || have != want) return 0;
  uint8_t lead = static_cast<uint8_t>(s[pos]);
  uint32_t c = want == 1 ? lead : want == 2 ? (lead & 0x1F) : want == 3 ? (lead & 0x0F) : (lead & 0x07);
  for (size_t i = 1; i < want; ++i) c = (c << 6) | (static_cast<uint8_t>(s[pos + i]) & 0x3F);
  *cp = c;
  return want;
}

absl::Status ValidateUtf8(absl::string_view s, absl::string_view what) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    uint32_t cp;
    size_t n = DecodeUtf8(s, pos, &cp);
    if (n == 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, " is not valid UTF-8: ill-formed sequence at byte offset ", pos));
    }
    pos += n;
  }
  return absl::OkStatus();
}

std::string Utf8Lossy(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    uint32_t cp;
    size_t n = DecodeUtf8(s, pos, &cp);
    if (n > 0) {
      out.append(s.data() + pos, n);
      pos += n;
    } else {
      size_t want = 0;
      pos += ValidPrefixLength(s, pos, &want);  // one replacement per maximal ill-formed subpart
      out.append("\xEF\xBF\xBD");
    }
  }
  return out;
}

size_t Utf8CompletePrefix(absl::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    uint32_t cp;
    size_t n = DecodeUtf8(s, pos, &cp);
    if (n > 0) {
      pos += n;
      continue;
    }
    size_t want = 0;
    size_t have = ValidPrefixLength(s, pos, &want);
    if (want > 1 && pos + have == s.size()) return pos;  // an incomplete character at the end: wait for more
    pos += have;
  }
  return pos;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace kvc
