#include "compressor/tokenizer/byte_level.h"

#include "compressor/tokenizer/utf8.h"

namespace kvc {

ByteLevelMap::ByteLevelMap() {
  char_to_byte_.fill(-1);
  // Printable Latin-1 bytes map to themselves; the rest are shifted to 256+ in byte order.
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    int cp = printable(b) ? b : next++;
    AppendUtf8(static_cast<uint32_t>(cp), &byte_to_utf8_[b]);
    char_to_byte_[cp] = static_cast<int16_t>(b);
  }
}

void ByteLevelMap::Encode(absl::string_view bytes, std::string* out) const {
  for (unsigned char c : bytes) out->append(byte_to_utf8_[c]);
}

std::string ByteLevelMap::Decode(absl::string_view mapped) const {
  std::string out;
  out.reserve(mapped.size());
  size_t pos = 0;
  while (pos < mapped.size()) {
    uint32_t cp;
    size_t n = DecodeUtf8(mapped, pos, &cp);
    if (n == 0) {
      out.push_back(mapped[pos++]);
      continue;
    }
    if (cp < char_to_byte_.size() && char_to_byte_[cp] >= 0) {
      out.push_back(static_cast<char>(char_to_byte_[cp]));
    } else {
      out.append(mapped.data() + pos, n);
    }
    pos += n;
  }
  return out;
}

}  // namespace kvc
