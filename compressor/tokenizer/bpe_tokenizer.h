// Byte-level BPE (GPT-2 family: SmolLM2, Llama 3, Qwen2, ...) with Hugging Face tokenizers' semantics:
// added/special tokens are split out first (leftmost-longest), the text between them is normalized (none or
// NFC), pre-tokenized, byte-mapped and merged by rank.
//
// Thread safety: Encode/Decode may run concurrently; the word cache is guarded by a mutex.
#ifndef KVC_COMPRESSOR_TOKENIZER_BPE_TOKENIZER_H_
#define KVC_COMPRESSOR_TOKENIZER_BPE_TOKENIZER_H_

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "compressor/tokenizer/byte_level.h"
#include "compressor/tokenizer/pre_tokenizer.h"
#include "compressor/tokenizer/tokenizer.h"

namespace kvc {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;      // matched only when EncodeOptions::allow_special
  bool lstrip = false;       // swallows whitespace on its left
  bool rstrip = false;       // swallows whitespace on its right
  bool single_word = false;  // matches only between word boundaries
};

// Everything a loader extracts from tokenizer.json or GGUF metadata.
struct BpeTokenizerSpec {
  std::vector<std::string> vocab;  // id -> token, in byte-mapped form; empty strings are unused ids
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added_tokens;
  bool nfc = false;
  bool add_prefix_space = false;
  bool ignore_merges = false;
  bool byte_fallback = false;  // bytes missing from the vocabulary use <0xAB> tokens
  PreTokenizer pre_tokenizer;
  std::optional<int32_t> unk_id, bos_id, eos_id;
  std::string chat_template;
};

class BpeTokenizer : public Tokenizer {
 public:
  // INVALID_ARGUMENT for inconsistent vocabularies (a merge whose parts or result are missing, ...).
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Create(BpeTokenizerSpec spec);
  // From a Hugging Face tokenizer.json (and tokenizer_config.json beside it, for the chat template and
  // bos/eos). UNIMPLEMENTED for models, normalizers or pre-tokenizers outside byte-level BPE.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromTokenizerJson(const std::string& path);
  // From GGUF metadata (tokenizer.ggml.model == "gpt2").
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromGguf(const GgufFile& gguf);

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              const EncodeOptions& options = {}) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     const DecodeOptions& options = {}) const override;
  absl::StatusOr<std::string> TokenBytes(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_bytes_.size()); }
  bool IsSpecial(int32_t id) const override;
  std::optional<int32_t> SpecialTokenId(absl::string_view text) const override;
  std::optional<int32_t> bos_id() const override { return spec_.bos_id; }
  std::optional<int32_t> eos_id() const override { return spec_.eos_id; }
  std::optional<int32_t> unk_id() const override { return spec_.unk_id; }
  const std::string& chat_template() const override { return spec_.chat_template; }

 private:
  explicit BpeTokenizer(BpeTokenizerSpec spec) : spec_(std::move(spec)) {}
  absl::Status EncodeText(absl::string_view text, std::vector<int32_t>* out) const;
  void EncodeWord(absl::string_view word, std::vector<int32_t>* out) const;

  BpeTokenizerSpec spec_;
  ByteLevelMap byte_map_;
  absl::flat_hash_map<std::string, int32_t> vocab_;            // byte-mapped token -> id
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left, right) -> (rank, merged)
  std::array<int32_t, 256> byte_id_{};                          // id of each single byte, -1 if none
  std::vector<std::string> id_to_bytes_;                        // id -> raw bytes (added tokens: content)
  std::vector<int8_t> id_kind_;                                 // 0 normal, 1 added, 2 special
  absl::flat_hash_map<std::string, int32_t> added_by_content_;
  std::array<std::vector<const AddedToken*>, 256> added_by_first_byte_;  // longest first

  mutable std::mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_TOKENIZER_BPE_TOKENIZER_H_
