// SentencePiece models (Llama 2 / Mistral tokenizer.model) through Debian's libsentencepiece, behind the
// Tokenizer interface. Control tokens (<s>, </s>, ...) are recognized in text only with allow_special.
//
// Thread safety: libsentencepiece's processor is safe for concurrent Encode/Decode after Load.
#ifndef KVC_COMPRESSOR_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
#define KVC_COMPRESSOR_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "compressor/tokenizer/sentencepiece_backend.h"
#include "compressor/tokenizer/tokenizer.h"

namespace kvc {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // `chat_template` comes from tokenizer_config.json beside the model, when there is one.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(const std::string& model_path);
  ~SentencePieceTokenizer() override;

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              const EncodeOptions& options = {}) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     const DecodeOptions& options = {}) const override;
  absl::StatusOr<std::string> TokenBytes(int32_t id) const override;
  int32_t vocab_size() const override;
  bool IsSpecial(int32_t id) const override;
  std::optional<int32_t> SpecialTokenId(absl::string_view text) const override;
  std::optional<int32_t> bos_id() const override;
  std::optional<int32_t> eos_id() const override;
  std::optional<int32_t> unk_id() const override;
  const std::string& chat_template() const override { return chat_template_; }

 private:
  SentencePieceTokenizer();
  absl::Status CheckIds(absl::Span<const int32_t> ids) const;

  std::unique_ptr<spm::Processor> sp_;
  std::vector<std::pair<std::string, int32_t>> specials_;  // control-token texts, longest first
  std::string chat_template_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
