// UTF-8 helpers shared by the tokenizers: validation with byte offsets, lossy repair with U+FFFD (the same
// maximal-subpart rule as Rust's String::from_utf8_lossy, which Hugging Face decoders use), and encoding.
#ifndef KVC_COMPRESSOR_TOKENIZER_UTF8_H_
#define KVC_COMPRESSOR_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvc {

// Length (1-4) of the well-formed UTF-8 sequence starting at s[pos], storing its code point; 0 when the
// bytes there are not a complete well-formed sequence.
size_t DecodeUtf8(absl::string_view s, size_t pos, uint32_t* cp);

// OK, or INVALID_ARGUMENT naming the byte offset of the first ill-formed sequence.
absl::Status ValidateUtf8(absl::string_view s, absl::string_view what = "text");

// Replaces each maximal ill-formed subpart with U+FFFD.
std::string Utf8Lossy(absl::string_view s);

// Length of the longest prefix of `s` made of complete characters, treating a trailing incomplete (but so far
// well-formed) sequence as pending rather than invalid. Invalid bytes elsewhere count as complete (they are
// replaced when emitted).
size_t Utf8CompletePrefix(absl::string_view s);

void AppendUtf8(uint32_t cp, std::string* out);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_TOKENIZER_UTF8_H_
