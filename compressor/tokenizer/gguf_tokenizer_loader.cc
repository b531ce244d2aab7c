// BpeTokenizer::FromGguf: tokenizer.ggml.* metadata -> BpeTokenizerSpec. The pre-tokenizer comes from
// tokenizer.ggml.pre, with the same splits llama.cpp applies for each family.
#include "absl/strings/str_cat.h"
#include "compressor/model/gguf_file.h"
#include "compressor/tokenizer/bpe_tokenizer.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

// GGUF token types (llama.cpp's llama_token_type).
enum : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

absl::Status AddPreTokenizer(const std::string& pre, BpeTokenizerSpec* spec) {
  auto add = [&](const char* pattern) -> absl::Status {
    KVC_ASSIGN_OR_RETURN(auto step, MakeRegexSplit(pattern, SplitBehavior::kIsolated));
    spec->pre_tokenizer.Add(std::move(step));
    return absl::OkStatus();
  };
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" || pre == "codeshell" ||
      pre == "exaone" || pre == "minerva") {
    // Digits one by one, then GPT-2's pattern: what these models' tokenizer.json files do.
    spec->pre_tokenizer.Add(MakeDigitsSplit(/*individual_digits=*/true));
    return add(kGpt2Pattern);
  }
  if (pre == "llama-bpe" || pre == "llama3" || pre == "dbrx" || pre == "smaug-bpe") return add(kLlama3Pattern);
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") return add(kQwen2Pattern);
  if (pre == "gpt-2" || pre == "gpt2" || pre == "default") return add(kGpt2Pattern);
  return absl::UnimplementedError(absl::StrCat("GGUF tokenizer pre-tokenizer '", pre, "' is not supported"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromGguf(const GgufFile& gguf) {
  KVC_ASSIGN_OR_RETURN(std::string model, gguf.GetString("tokenizer.ggml.model"));
  if (model != "gpt2") {
    return absl::UnimplementedError(absl::StrCat("GGUF tokenizer model '", model, "' is not byte-level BPE"));
  }
  const GgufValue* tokens = gguf.Find("tokenizer.ggml.tokens");
  const GgufValue* merges = gguf.Find("tokenizer.ggml.merges");
  const GgufValue* types = gguf.Find("tokenizer.ggml.token_type");
  if (tokens == nullptr || !tokens->is_array || tokens->kind != GgufValue::Kind::kString) {
    return absl::InvalidArgumentError("GGUF tokenizer.ggml.tokens is missing or not a string array");
  }
  if (merges == nullptr || !merges->is_array || merges->kind != GgufValue::Kind::kString) {
    return absl::InvalidArgumentError("GGUF tokenizer.ggml.merges is missing or not a string array");
  }
  if (types != nullptr && types->ints.size() != tokens->strings.size()) {
    return absl::InvalidArgumentError("GGUF tokenizer.ggml.token_type does not match the token count");
  }
  BpeTokenizerSpec spec;
  spec.vocab = tokens->strings;
  for (const std::string& m : merges->strings) {
    size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("malformed GGUF merge '", m, "'"));
    spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  if (types != nullptr) {
    for (size_t id = 0; id < types->ints.size(); ++id) {
      int64_t t = types->ints[id];
      if (t != kControl && t != kUserDefined) continue;
      AddedToken a;
      a.id = static_cast<int32_t>(id);
      a.content = spec.vocab[id];
      a.special = t == kControl;
      spec.added_tokens.push_back(std::move(a));
    }
  }
  auto pre = gguf.GetString("tokenizer.ggml.pre");
  KVC_RETURN_IF_ERROR(AddPreTokenizer(pre.ok() ? *pre : "default", &spec));
  auto id = [&](const char* key) -> std::optional<int32_t> {
    auto v = gguf.GetInt(key);
    return v.ok() ? std::optional<int32_t>(static_cast<int32_t>(*v)) : std::nullopt;
  };
  spec.bos_id = id("tokenizer.ggml.bos_token_id");
  spec.eos_id = id("tokenizer.ggml.eos_token_id");
  spec.unk_id = id("tokenizer.ggml.unknown_token_id");
  auto tmpl = gguf.GetString("tokenizer.chat_template");
  if (tmpl.ok()) spec.chat_template = *tmpl;
  return Create(std::move(spec));
}

}  // namespace kvc
