// Chat templates for the model families kvc serves: ChatML (SmolLM2, Qwen), Llama 3, and Llama 2 / Mistral
// [INST], plus a raw mode. A rendered prompt is a list of segments that keeps the template's markup apart
// from user content, so that special-token text inside documents or queries is never read as a token.
//
// The compression prompt of DESIGN §3 and §11 is split in two: the context prefix (template start, system
// prompt, start of the user turn) that precedes the documents and is always kept, and the suffix (the
// question, end of turn, generation prompt) that follows them.
#ifndef KVC_COMPRESSOR_TOKENIZER_CHAT_TEMPLATE_H_
#define KVC_COMPRESSOR_TOKENIZER_CHAT_TEMPLATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compressor/tokenizer/tokenizer.h"

namespace kvc {

enum class ChatFormat { kRaw, kChatMl, kLlama3, kLlama2 };

// "auto" is not a format; resolve it with DetectChatFormat. INVALID_ARGUMENT for unknown names.
absl::StatusOr<ChatFormat> ParseChatFormat(absl::string_view name);
const char* ChatFormatName(ChatFormat format);
// From a model's chat_template string (Jinja source); kRaw when it matches no known family.
ChatFormat DetectChatFormat(absl::string_view chat_template);

struct PromptSegment {
  std::string text;
  bool markup = false;  // template text: encoded with special tokens recognized
};
using Prompt = std::vector<PromptSegment>;

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// A whole conversation, ending with the assistant's turn opened when add_generation_prompt.
absl::StatusOr<Prompt> RenderChat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt);

struct CompressionPrompt {
  Prompt prefix;  // template start + system prompt + "Context:\n"
  Prompt suffix;  // "\n\nQuestion: ..." + end of the user turn + generation prompt
};
// The system prompt of DESIGN §11: what a request gets when it leaves system_prompt unset, and what the
// quality tools prompt with.
inline constexpr absl::string_view kDefaultSystemPrompt =
    "Answer the question using only the context. Reply with the answer only.";

// The prompt around the documents, with the wording of DESIGN §11.
CompressionPrompt BuildCompressionPrompt(ChatFormat format, absl::string_view system, absl::string_view question);

// Encodes segments in order: markup with special tokens allowed, content without.
absl::StatusOr<std::vector<int32_t>> EncodePrompt(const Tokenizer& tokenizer, const Prompt& prompt);

// The token ids a compression request is made of: context = [prefix][document], with the prefix protected,
// and the suffix (question, end of turn, generation prompt).
struct EncodedCompressionPrompt {
  std::vector<int64_t> context;
  int64_t protected_prefix = 0;
  std::vector<int64_t> suffix;
};
absl::StatusOr<EncodedCompressionPrompt> EncodeCompressionPrompt(const Tokenizer& tokenizer, ChatFormat format,
                                                                 absl::string_view system, absl::string_view document,
                                                                 absl::string_view question);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_TOKENIZER_CHAT_TEMPLATE_H_
