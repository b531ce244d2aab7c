// The tokenizer interface: text <-> token ids, exactly as Hugging Face tokenizers would produce them for the
// same model. Implementations: BpeTokenizer (byte-level BPE from tokenizer.json or GGUF metadata) and
// SentencePieceTokenizer (Llama 2 / Mistral tokenizer.model, through libsentencepiece).
//
// Thread safety: implementations are immutable after creation except for internal caches, which are
// synchronized; Encode and Decode may be called concurrently.
#ifndef KVC_COMPRESSOR_TOKENIZER_TOKENIZER_H_
#define KVC_COMPRESSOR_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvc {

class GgufFile;

struct EncodeOptions {
  // Recognize special-token text (e.g. "<|im_start|>") as the special token. Off by default, so that text
  // from users and documents can never inject control tokens; chat templates turn it on for their markup.
  bool allow_special = false;
};

struct DecodeOptions {
  bool skip_special = false;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // INVALID_ARGUMENT (with the byte offset) for text that is not valid UTF-8.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                                      const EncodeOptions& options = {}) const = 0;
  // INVALID_ARGUMENT for ids outside [0, vocab_size). Bytes that do not form valid UTF-8 on their own (a
  // character split across the end) come out as U+FFFD, as in Hugging Face's decode.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                             const DecodeOptions& options = {}) const = 0;
  // The raw bytes a token stands for (special tokens: their text). For streaming detokenization.
  virtual absl::StatusOr<std::string> TokenBytes(int32_t id) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
  // Id of an exact special/added token text, if there is one.
  virtual std::optional<int32_t> SpecialTokenId(absl::string_view text) const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  // Stands for input the vocabulary cannot express (bytes missing from a byte-level vocabulary, ...).
  virtual std::optional<int32_t> unk_id() const = 0;
  // The chat_template string shipped with the model, empty if none.
  virtual const std::string& chat_template() const = 0;
};

// Loads a tokenizer from a model path: a .gguf file (embedded tokenizer), a tokenizer.json or
// tokenizer.model file, or a directory holding one of them.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_TOKENIZER_TOKENIZER_H_
