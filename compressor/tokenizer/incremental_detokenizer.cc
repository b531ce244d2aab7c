#include "compressor/tokenizer/incremental_detokenizer.h"

#include "compressor/tokenizer/utf8.h"
#include "compressor/util/status_macros.h"

namespace kvc {

absl::StatusOr<std::string> IncrementalDetokenizer::Add(int32_t id) {
  KVC_ASSIGN_OR_RETURN(std::string bytes, tokenizer_.TokenBytes(id));
  if (options_.skip_special && tokenizer_.IsSpecial(id)) return std::string();
  pending_ += bytes;
  size_t complete = Utf8CompletePrefix(pending_);
  std::string out = Utf8Lossy(absl::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return out;
}

std::string IncrementalDetokenizer::Finish() {
  std::string out = Utf8Lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace kvc
