// Pre-tokenization: splitting normalized text into the pieces that BPE then encodes one at a time, with the
// semantics of Hugging Face's Split (PCRE2 regex, UTF + UCP, JIT) and Digits pre-tokenizers.
//
// Thread safety: immutable after creation; Split may be called concurrently (match data is per thread).
#ifndef KVC_COMPRESSOR_TOKENIZER_PRE_TOKENIZER_H_
#define KVC_COMPRESSOR_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvc {

// What happens to the delimiter matches, as in Hugging Face's SplitDelimiterBehavior.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class SplitStep {
 public:
  virtual ~SplitStep() = default;
  // Splits `piece` and appends the non-empty parts (views into `piece`) to `out`.
  virtual absl::Status Split(absl::string_view piece, std::vector<absl::string_view>* out) const = 0;
};

// A regex split. INVALID_ARGUMENT when the pattern does not compile.
absl::StatusOr<std::unique_ptr<SplitStep>> MakeRegexSplit(const std::string& pattern, SplitBehavior behavior,
                                                          bool invert = false);
// Hugging Face's Digits: numeric characters (Unicode Nd, Nl, No) isolated one by one, or as contiguous runs.
std::unique_ptr<SplitStep> MakeDigitsSplit(bool individual_digits);

// Patterns of the common byte-level BPE families.
extern const char kGpt2Pattern[];
extern const char kLlama3Pattern[];
extern const char kQwen2Pattern[];

// Applies the steps in order.
class PreTokenizer {
 public:
  void Add(std::unique_ptr<SplitStep> step) { steps_.push_back(std::move(step)); }
  bool empty() const { return steps_.empty(); }
  absl::Status Split(absl::string_view text, std::vector<absl::string_view>* out) const;

 private:
  std::vector<std::unique_ptr<SplitStep>> steps_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_TOKENIZER_PRE_TOKENIZER_H_
