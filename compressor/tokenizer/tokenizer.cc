#include "compressor/tokenizer/tokenizer.h"

#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "compressor/model/gguf_file.h"
#include "compressor/tokenizer/bpe_tokenizer.h"
#include "compressor/tokenizer/sentencepiece_tokenizer.h"
#include "compressor/util/status_macros.h"

namespace kvc {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json", ec)) return BpeTokenizer::FromTokenizerJson((p / "tokenizer.json").string());
    if (fs::exists(p / "tokenizer.model", ec)) return SentencePieceTokenizer::Load((p / "tokenizer.model").string());
    return absl::NotFoundError(absl::StrCat("no tokenizer.json or tokenizer.model in ", path));
  }
  if (!fs::exists(p, ec)) return absl::NotFoundError(absl::StrCat("tokenizer path ", path, " does not exist"));
  if (p.extension() == ".json") return BpeTokenizer::FromTokenizerJson(path);
  if (p.extension() == ".model") return SentencePieceTokenizer::Load(path);
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(path));
  return BpeTokenizer::FromGguf(*gguf);
}

}  // namespace kvc
