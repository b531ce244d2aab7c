#include "compressor/tokenizer/text_boundaries.h"

#include <cctype>
#include <string>

#include "absl/strings/str_cat.h"

namespace kvc {
namespace {

bool IsSpace(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Bytes of UTF-8 multi-byte characters count as letters: names in other scripts stay whole.
bool IsWordByte(unsigned char c) { return std::isalnum(c) != 0 || c >= 0x80; }

constexpr char kSentencePieceSpace[] = "\xE2\x96\x81";  // "▁"

}  // namespace

absl::StatusOr<std::vector<uint8_t>> TextBoundaries(const Tokenizer& tokenizer, absl::Span<const int64_t> ids) {
  std::vector<uint8_t> flags(ids.size(), 0);
  bool after_break = true;     // the previous token ended in whitespace or punctuation, or was special
  bool sentence_ends = true;   // the previous token closed a sentence (if this one starts with a space)
  bool line_break = true;      // the previous token held a line break
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tokenizer.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("token ", i, ": id ", ids[i], " is outside the vocabulary"));
    }
    const int32_t id = static_cast<int32_t>(ids[i]);
    std::string bytes;
    if (!tokenizer.IsSpecial(id)) {
      absl::StatusOr<std::string> b = tokenizer.TokenBytes(id);
      if (!b.ok()) return b.status();
      bytes = *std::move(b);
    }
    if (bytes.rfind(kSentencePieceSpace, 0) == 0) bytes.replace(0, 3, " ");
    const bool special = bytes.empty();
    const unsigned char first = special ? ' ' : bytes.front();
    const unsigned char last = special ? ' ' : bytes.back();
    const bool starts_word = special || after_break || !IsWordByte(first);
    const bool starts_sentence = special || line_break || (sentence_ends && IsSpace(first));
    flags[i] = (starts_word || starts_sentence ? kWordStart : 0) | (starts_sentence ? kSentenceStart : 0);
    line_break = special || bytes.find('\n') != std::string::npos;
    after_break = special || !IsWordByte(last);
    // "67767." closes a sentence when a space follows; "3.14" does not, since "14" follows without one.
    sentence_ends = special || last == '.' || last == '!' || last == '?' || last == ';';
  }
  return flags;
}

}  // namespace kvc
