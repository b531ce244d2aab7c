#include "compressor/tokenizer/chat_template.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

void Markup(Prompt* p, absl::string_view text) {
  if (!text.empty()) p->push_back({std::string(text), true});
}
void Content(Prompt* p, absl::string_view text) {
  if (!text.empty()) p->push_back({std::string(text), false});
}

// Opens a turn of `role`; what follows is its content.
void OpenTurn(ChatFormat f, absl::string_view role, Prompt* p) {
  switch (f) {
    case ChatFormat::kChatMl: Markup(p, absl::StrCat("<|im_start|>", role, "\n")); break;
    case ChatFormat::kLlama3: Markup(p, absl::StrCat("<|start_header_id|>", role, "<|end_header_id|>\n\n")); break;
    case ChatFormat::kLlama2:
    case ChatFormat::kRaw: break;
  }
}

void CloseTurn(ChatFormat f, Prompt* p) {
  switch (f) {
    case ChatFormat::kChatMl: Markup(p, "<|im_end|>\n"); break;
    case ChatFormat::kLlama3: Markup(p, "<|eot_id|>"); break;
    case ChatFormat::kLlama2:
    case ChatFormat::kRaw: break;
  }
}

}  // namespace

absl::StatusOr<ChatFormat> ParseChatFormat(absl::string_view name) {
  if (name == "raw") return ChatFormat::kRaw;
  if (name == "chatml") return ChatFormat::kChatMl;
  if (name == "llama3") return ChatFormat::kLlama3;
  if (name == "llama2" || name == "mistral") return ChatFormat::kLlama2;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template '", name, "' (use auto, chatml, llama3, llama2, mistral or raw)"));
}

const char* ChatFormatName(ChatFormat format) {
  switch (format) {
    case ChatFormat::kRaw: return "raw";
    case ChatFormat::kChatMl: return "chatml";
    case ChatFormat::kLlama3: return "llama3";
    case ChatFormat::kLlama2: return "llama2";
  }
  return "raw";
}

ChatFormat DetectChatFormat(absl::string_view t) {
  if (absl::StrContains(t, "<|im_start|>")) return ChatFormat::kChatMl;
  if (absl::StrContains(t, "<|start_header_id|>")) return ChatFormat::kLlama3;
  if (absl::StrContains(t, "[INST]")) return ChatFormat::kLlama2;
  return ChatFormat::kRaw;
}

absl::StatusOr<Prompt> RenderChat(ChatFormat f, const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) {
  Prompt p;
  if (f == ChatFormat::kLlama3) Markup(&p, "<|begin_of_text|>");
  if (f == ChatFormat::kLlama2) {
    // [INST] pairs: the system prompt is folded into the first user message.
    std::string system;
    bool first_user = true;
    for (const ChatMessage& m : messages) {
      if (m.role == "system") {
        system = m.content;
      } else if (m.role == "user") {
        Markup(&p, "<s>[INST] ");
        if (first_user && !system.empty()) {
          Markup(&p, "<<SYS>>\n");
          Content(&p, system);
          Markup(&p, "\n<</SYS>>\n\n");
        }
        first_user = false;
        Content(&p, m.content);
        Markup(&p, " [/INST]");
      } else if (m.role == "assistant") {
        Content(&p, absl::StrCat(" ", m.content, " "));
        Markup(&p, "</s>");
      } else {
        return absl::InvalidArgumentError(absl::StrCat("unknown chat role '", m.role, "'"));
      }
    }
    return p;
  }
  for (const ChatMessage& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat("unknown chat role '", m.role, "'"));
    }
    if (f == ChatFormat::kRaw) {
      Content(&p, m.content);
      Content(&p, "\n\n");
      continue;
    }
    OpenTurn(f, m.role, &p);
    Content(&p, m.content);
    CloseTurn(f, &p);
  }
  if (add_generation_prompt) OpenTurn(f, "assistant", &p);
  return p;
}

CompressionPrompt BuildCompressionPrompt(ChatFormat f, absl::string_view system, absl::string_view question) {
  CompressionPrompt cp;
  switch (f) {
    case ChatFormat::kChatMl:
    case ChatFormat::kLlama3:
      if (f == ChatFormat::kLlama3) Markup(&cp.prefix, "<|begin_of_text|>");
      if (!system.empty()) {
        OpenTurn(f, "system", &cp.prefix);
        Content(&cp.prefix, system);
        CloseTurn(f, &cp.prefix);
      }
      OpenTurn(f, "user", &cp.prefix);
      Content(&cp.prefix, "Context:\n");
      Content(&cp.suffix, absl::StrCat("\n\nQuestion: ", question));
      CloseTurn(f, &cp.suffix);
      OpenTurn(f, "assistant", &cp.suffix);
      break;
    case ChatFormat::kLlama2:
      Markup(&cp.prefix, "<s>[INST] ");
      if (!system.empty()) {
        Markup(&cp.prefix, "<<SYS>>\n");
        Content(&cp.prefix, system);
        Markup(&cp.prefix, "\n<</SYS>>\n\n");
      }
      Content(&cp.prefix, "Context:\n");
      Content(&cp.suffix, absl::StrCat("\n\nQuestion: ", question));
      Markup(&cp.suffix, " [/INST]");
      break;
    case ChatFormat::kRaw:
      if (!system.empty()) Content(&cp.prefix, absl::StrCat(system, "\n\n"));
      Content(&cp.prefix, "Context:\n");
      Content(&cp.suffix, absl::StrCat("\n\nQuestion: ", question, "\nAnswer:"));
      break;
  }
  return cp;
}

absl::StatusOr<std::vector<int32_t>> EncodePrompt(const Tokenizer& tokenizer, const Prompt& prompt) {
  std::vector<int32_t> ids;
  for (const PromptSegment& s : prompt) {
    EncodeOptions opts;
    opts.allow_special = s.markup;
    KVC_ASSIGN_OR_RETURN(std::vector<int32_t> part, tokenizer.Encode(s.text, opts));
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

absl::StatusOr<EncodedCompressionPrompt> EncodeCompressionPrompt(const Tokenizer& tokenizer, ChatFormat format,
                                                                 absl::string_view system, absl::string_view document,
                                                                 absl::string_view question) {
  CompressionPrompt cp = BuildCompressionPrompt(format, system, question);
  KVC_ASSIGN_OR_RETURN(std::vector<int32_t> prefix, EncodePrompt(tokenizer, cp.prefix));
  KVC_ASSIGN_OR_RETURN(std::vector<int32_t> doc, tokenizer.Encode(document));
  KVC_ASSIGN_OR_RETURN(std::vector<int32_t> suffix, EncodePrompt(tokenizer, cp.suffix));
  EncodedCompressionPrompt out;
  out.context.assign(prefix.begin(), prefix.end());
  out.context.insert(out.context.end(), doc.begin(), doc.end());
  out.protected_prefix = static_cast<int64_t>(prefix.size());
  out.suffix.assign(suffix.begin(), suffix.end());
  return out;
}

}  // namespace kvc
