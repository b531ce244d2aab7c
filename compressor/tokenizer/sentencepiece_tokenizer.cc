#include "compressor/tokenizer/sentencepiece_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "compressor/tokenizer/utf8.h"
#include "compressor/util/status_macros.h"

namespace kvc {

SentencePieceTokenizer::SentencePieceTokenizer() : sp_(std::make_unique<spm::Processor>()) {}
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(const std::string& model_path) {
  auto tok = std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer());
  std::string err = tok->sp_->Load(model_path);
  if (!err.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot load SentencePiece model ", model_path, ": ", err));
  }
  for (int i = 0; i < tok->sp_->PieceSize(); ++i) {
    // Hugging Face treats <unk> like the control tokens: recognizable in text when special tokens are allowed.
    if (tok->sp_->IsControl(i) || tok->sp_->IsUnknown(i)) {
      tok->specials_.emplace_back(tok->sp_->IdToPiece(i), i);
    }
  }
  std::sort(tok->specials_.begin(), tok->specials_.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  std::filesystem::path config = std::filesystem::path(model_path).parent_path() / "tokenizer_config.json";
  std::ifstream in(config);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string()) {
      tok->chat_template_ = j["chat_template"].get<std::string>();
    }
  }
  return tok;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(absl::string_view text,
                                                                   const EncodeOptions& options) const {
  KVC_RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<int32_t> out;
  auto encode_segment = [&](absl::string_view segment) -> absl::Status {
    if (segment.empty()) return absl::OkStatus();
    std::vector<int> ids;
    std::string err = sp_->Encode(std::string(segment), &ids);
    if (!err.empty()) return absl::InternalError(absl::StrCat("SentencePiece encode failed: ", err));
    out.insert(out.end(), ids.begin(), ids.end());
    return absl::OkStatus();
  };
  size_t start = 0, pos = 0;
  while (options.allow_special && pos < text.size()) {
    bool matched = false;
    for (const auto& [piece, id] : specials_) {
      if (!piece.empty() && text.compare(pos, piece.size(), piece) == 0) {
        KVC_RETURN_IF_ERROR(encode_segment(text.substr(start, pos - start)));
        out.push_back(id);
        pos += piece.size();
        start = pos;
        matched = true;
        break;
      }
    }
    if (!matched) ++pos;
  }
  KVC_RETURN_IF_ERROR(encode_segment(text.substr(start)));
  return out;
}

absl::Status SentencePieceTokenizer::CheckIds(absl::Span<const int32_t> ids) const {
  for (int32_t id : ids) {
    if (id < 0 || id >= sp_->PieceSize()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                                                     sp_->PieceSize(), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SentencePieceTokenizer::Decode(absl::Span<const int32_t> ids,
                                                           const DecodeOptions& options) const {
  KVC_RETURN_IF_ERROR(CheckIds(ids));
  std::vector<int> kept;
  for (int32_t id : ids) {
    if (options.skip_special && IsSpecial(id)) continue;
    kept.push_back(id);
  }
  std::string text;
  std::string err = sp_->Decode(kept, &text);
  if (!err.empty()) return absl::InternalError(absl::StrCat("SentencePiece decode failed: ", err));
  return Utf8Lossy(text);
}

absl::StatusOr<std::string> SentencePieceTokenizer::TokenBytes(int32_t id) const {
  int32_t one[] = {id};
  KVC_RETURN_IF_ERROR(CheckIds(one));
  std::string piece = sp_->IdToPiece(id);
  if (sp_->IsByte(id) && piece.size() == 6) {  // <0xAB>
    return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
  }
  std::string out;
  for (size_t i = 0; i < piece.size(); ++i) {
    if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {  // U+2581 stands for a space
      out.push_back(' ');
      i += 2;
    } else {
      out.push_back(piece[i]);
    }
  }
  return out;
}

int32_t SentencePieceTokenizer::vocab_size() const { return sp_->PieceSize(); }

bool SentencePieceTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < sp_->PieceSize() && sp_->IsControl(id);
}

std::optional<int32_t> SentencePieceTokenizer::SpecialTokenId(absl::string_view text) const {
  for (const auto& [piece, id] : specials_) {
    if (piece == text) return id;
  }
  return std::nullopt;
}

std::optional<int32_t> SentencePieceTokenizer::bos_id() const {
  return sp_->BosId() >= 0 ? std::optional<int32_t>(sp_->BosId()) : std::nullopt;
}

std::optional<int32_t> SentencePieceTokenizer::unk_id() const {
  return sp_->UnkId() >= 0 ? std::optional<int32_t>(sp_->UnkId()) : std::nullopt;
}

std::optional<int32_t> SentencePieceTokenizer::eos_id() const {
  return sp_->EosId() >= 0 ? std::optional<int32_t>(sp_->EosId()) : std::nullopt;
}

}  // namespace kvc
