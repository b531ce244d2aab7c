// Where words and sentences start in a token sequence, read from the tokens' own bytes, so that a method can
// keep a number or a name whole (SmolLM2 spells "67767" as five digit tokens) and select whole sentences.
//
// A token starts a word when its bytes start with whitespace or punctuation, or when the previous token ended
// in whitespace or is punctuation; letters and digits that follow letters or digits without a space continue
// the word. A token starts a sentence after a token that holds a line break, or after one that ends in '.',
// '!', '?' or ';' when this token starts with whitespace. Special tokens are words and sentences of their own.
// The rules read bytes only, so they hold for any byte-level or SentencePiece vocabulary (its "▁" marker is
// whitespace).
//
// Thread safety: a pure function of its inputs.
#ifndef KVC_COMPRESSOR_TOKENIZER_TEXT_BOUNDARIES_H_
#define KVC_COMPRESSOR_TOKENIZER_TEXT_BOUNDARIES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compressor/tokenizer/tokenizer.h"

namespace kvc {

// Per-token flags; a sentence start is always a word start.
enum TextBoundary : uint8_t {
  kWordStart = 1,
  kSentenceStart = 2,
};

// One flag byte per id (the first token starts a word and a sentence). INVALID_ARGUMENT for ids outside the
// vocabulary.
absl::StatusOr<std::vector<uint8_t>> TextBoundaries(const Tokenizer& tokenizer, absl::Span<const int64_t> ids);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_TOKENIZER_TEXT_BOUNDARIES_H_
