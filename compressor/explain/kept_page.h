// A picture of what a compression kept: a self-contained HTML page (no scripts, no external files) with the
// document, each token shaded by the share of (layer, KV head) slots that kept it, the question, the method
// and the budget. For reading a method's choices, not for machines: the .kvc file is the record.
//
// Thread safety: pure functions.
#ifndef KVC_COMPRESSOR_EXPLAIN_KEPT_PAGE_H_
#define KVC_COMPRESSOR_EXPLAIN_KEPT_PAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compressor/tokenizer/tokenizer.h"

namespace kvc {

struct KeptPageInput {
  // One entry per context token: its text (tokens that end inside a UTF-8 character carry no text; the
  // token that completes it carries the character) and how many (layer, KV head) slots kept it.
  std::vector<std::string> token_text;
  std::vector<int64_t> kept_by;
  int64_t slots = 1;                // layers x KV heads
  int64_t protected_prefix = 0;     // leading tokens that are the template and system prompt
  std::string question;
  std::string method;
  std::string budget;               // e.g. "ratio 8"
  int64_t tokens_out = 0;           // kept entries per head
};

// Per context position, how many slots of kept_positions (per layer [kv_heads, k], original positions, -1
// for padding) hold it. INVALID_ARGUMENT for a position outside [0, context_len).
absl::StatusOr<std::vector<int64_t>> KeptCounts(const std::vector<torch::Tensor>& kept_positions,
                                                int64_t context_len);

// Each id's text for the page, as described in KeptPageInput::token_text. INVALID_ARGUMENT for ids outside
// the vocabulary.
absl::StatusOr<std::vector<std::string>> TokenTexts(const Tokenizer& tokenizer, absl::Span<const int64_t> ids);

// The page. INVALID_ARGUMENT when token_text and kept_by differ in length or slots < 1.
absl::StatusOr<std::string> RenderKeptPage(const KeptPageInput& in);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_EXPLAIN_KEPT_PAGE_H_
