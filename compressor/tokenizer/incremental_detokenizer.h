// Streams text out of a sequence of token ids without ever emitting half a UTF-8 character: bytes of an
// incomplete character stay pending until the tokens that complete it arrive.
//
// Ownership: borrows the Tokenizer, which must outlive it. Thread safety: one stream per object.
#ifndef KVC_COMPRESSOR_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
#define KVC_COMPRESSOR_TOKENIZER_INCREMENTAL_DETOKENIZER_H_

#include <string>

#include "compressor/tokenizer/tokenizer.h"

namespace kvc {

class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, DecodeOptions options = {})
      : tokenizer_(tokenizer), options_(options) {}

  // Adds one token and returns the text completed by it (possibly empty). INVALID_ARGUMENT for bad ids.
  absl::StatusOr<std::string> Add(int32_t id);
  // Ends the stream: pending bytes that never formed a character come out as U+FFFD.
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  DecodeOptions options_;
  std::string pending_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
