// GPT-2's reversible byte <-> printable-character mapping used by byte-level BPE vocabularies: every byte
// becomes one Unicode character, so a vocabulary of strings can cover arbitrary bytes.
#ifndef KVC_COMPRESSOR_TOKENIZER_BYTE_LEVEL_H_
#define KVC_COMPRESSOR_TOKENIZER_BYTE_LEVEL_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace kvc {

class ByteLevelMap {
 public:
  ByteLevelMap();
  // Appends the mapped characters (UTF-8) of `bytes` to `out`.
  void Encode(absl::string_view bytes, std::string* out) const;
  // Maps a vocabulary string back to bytes. Characters outside the map are kept as their UTF-8 bytes.
  std::string Decode(absl::string_view mapped) const;

 private:
  std::array<std::string, 256> byte_to_utf8_;
  std::array<int16_t, 512> char_to_byte_;  // code points used by the map are all < 512
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_TOKENIZER_BYTE_LEVEL_H_
