#include "compressor/tokenizer/bpe_tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "compressor/tokenizer/utf8.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

constexpr size_t kMaxCacheEntries = 1 << 16;

uint64_t PairKey(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

// Unicode White_Space, as Rust's char::is_whitespace (used for lstrip/rstrip of added tokens).
bool IsWhitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Alphanumeric or underscore: a "word" character for single_word added tokens.
bool IsWordChar(absl::string_view s, size_t pos, bool before) {
  if (before) {
    if (pos == 0) return false;
    size_t start = pos - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    pos = start;
  } else if (pos >= s.size()) {
    return false;
  }
  uint32_t cp;
  if (DecodeUtf8(s, pos, &cp) == 0) return false;
  if (cp == '_') return true;
  utf8proc_category_t cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

size_t SkipWhitespaceLeft(absl::string_view s, size_t pos, size_t floor) {
  while (pos > floor) {
    size_t start = pos - 1;
    while (start > floor && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    uint32_t cp;
    if (DecodeUtf8(s, start, &cp) == 0 || !IsWhitespace(cp)) break;
    pos = start;
  }
  return pos;
}

size_t SkipWhitespaceRight(absl::string_view s, size_t pos) {
  while (pos < s.size()) {
    uint32_t cp;
    size_t n = DecodeUtf8(s, pos, &cp);
    if (n == 0 || !IsWhitespace(cp)) break;
    pos += n;
  }
  return pos;
}

absl::StatusOr<std::string> Nfc(absl::string_view text) {
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                    static_cast<utf8proc_ssize_t>(text.size()), &out,
                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("NFC normalization failed: ", utf8proc_errmsg(n)));
  std::string s(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(BpeTokenizerSpec spec) {
  auto tok = std::unique_ptr<BpeTokenizer>(new BpeTokenizer(std::move(spec)));
  BpeTokenizerSpec& s = tok->spec_;
  size_t size = s.vocab.size();
  for (const AddedToken& a : s.added_tokens) {
    if (a.id < 0) return absl::InvalidArgumentError(absl::StrCat("added token ", a.content, " has a negative id"));
    if (a.content.empty()) return absl::InvalidArgumentError("an added token has empty content");
    KVC_RETURN_IF_ERROR(ValidateUtf8(a.content, "added token content"));
    size = std::max(size, static_cast<size_t>(a.id) + 1);
  }
  tok->id_to_bytes_.assign(size, "");
  tok->id_kind_.assign(size, 0);
  for (size_t id = 0; id < s.vocab.size(); ++id) {
    if (s.vocab[id].empty()) continue;
    tok->vocab_[s.vocab[id]] = static_cast<int32_t>(id);
    tok->id_to_bytes_[id] = tok->byte_map_.Decode(s.vocab[id]);
  }
  std::string mapped;
  for (int b = 0; b < 256; ++b) {
    mapped.clear();
    tok->byte_map_.Encode(std::string(1, static_cast<char>(b)), &mapped);
    auto it = tok->vocab_.find(mapped);
    if (it == tok->vocab_.end() && s.byte_fallback) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
      it = tok->vocab_.find(hex);
    }
    tok->byte_id_[b] = it == tok->vocab_.end() ? -1 : it->second;
  }
  for (size_t rank = 0; rank < s.merges.size(); ++rank) {
    const auto& [l, r] = s.merges[rank];
    auto li = tok->vocab_.find(l), ri = tok->vocab_.find(r), mi = tok->vocab_.find(l + r);
    if (li == tok->vocab_.end() || ri == tok->vocab_.end() || mi == tok->vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merge ", rank, " ('", l, "' + '", r,
                                                     "') refers to a token missing from the vocabulary"));
    }
    // The first occurrence of a pair defines its rank, as in Hugging Face's loader.
    tok->merges_.try_emplace(PairKey(li->second, ri->second), static_cast<int32_t>(rank), mi->second);
  }
  for (const AddedToken& a : s.added_tokens) {
    tok->id_to_bytes_[a.id] = a.content;
    tok->id_kind_[a.id] = a.special ? 2 : 1;
    tok->added_by_content_[a.content] = a.id;
    tok->added_by_first_byte_[static_cast<unsigned char>(a.content[0])].push_back(&a);
  }
  for (auto& list : tok->added_by_first_byte_) {
    std::stable_sort(list.begin(), list.end(),
                     [](const AddedToken* x, const AddedToken* y) { return x->content.size() > y->content.size(); });
  }
  for (auto id : {s.unk_id, s.bos_id, s.eos_id}) {
    if (id.has_value() && (*id < 0 || static_cast<size_t>(*id) >= size)) {
      return absl::InvalidArgumentError(absl::StrCat("special token id ", *id, " is outside the vocabulary"));
    }
  }
  return tok;
}

bool BpeTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < id_kind_.size() && id_kind_[id] == 2;
}

std::optional<int32_t> BpeTokenizer::SpecialTokenId(absl::string_view text) const {
  auto it = added_by_content_.find(text);
  if (it == added_by_content_.end()) return std::nullopt;
  return it->second;
}

void BpeTokenizer::EncodeWord(absl::string_view word, std::vector<int32_t>* out) const {
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> symbols;
  bool whole = false;
  if (spec_.ignore_merges) {
    std::string mapped;
    byte_map_.Encode(word, &mapped);
    auto it = vocab_.find(mapped);
    if (it != vocab_.end()) {
      symbols.push_back(it->second);
      whole = true;
    }
  }
  if (!whole) {
    symbols.reserve(word.size());
    for (unsigned char c : word) {
      int32_t id = byte_id_[c];
      if (id >= 0) {
        symbols.push_back(id);
      } else if (spec_.unk_id.has_value()) {
        symbols.push_back(*spec_.unk_id);
      }  // else dropped, as Hugging Face does without an unk token
    }
    // Repeatedly merge the lowest-ranked adjacent pair, leftmost first among equals.
    while (symbols.size() > 1) {
      int32_t best_rank = std::numeric_limits<int32_t>::max(), best_id = -1;
      size_t best = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        auto it = merges_.find(PairKey(symbols[i], symbols[i + 1]));
        if (it != merges_.end() && it->second.first < best_rank) {
          best_rank = it->second.first;
          best_id = it->second.second;
          best = i;
        }
      }
      if (best_id < 0) break;
      symbols[best] = best_id;
      symbols.erase(symbols.begin() + best + 1);
    }
  }
  out->insert(out->end(), symbols.begin(), symbols.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::string(word), std::move(symbols));
}

absl::Status BpeTokenizer::EncodeText(absl::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return absl::OkStatus();
  std::string owned;
  if (spec_.nfc) {
    KVC_ASSIGN_OR_RETURN(owned, Nfc(text));
    text = owned;
  }
  if (spec_.add_prefix_space && text[0] != ' ') {
    owned = absl::StrCat(" ", text);
    text = owned;
  }
  std::vector<absl::string_view> pieces;
  if (spec_.pre_tokenizer.empty()) {
    pieces.push_back(text);
  } else {
    KVC_RETURN_IF_ERROR(spec_.pre_tokenizer.Split(text, &pieces));
  }
  for (absl::string_view piece : pieces) EncodeWord(piece, out);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(absl::string_view text,
                                                         const EncodeOptions& options) const {
  KVC_RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  size_t segment_start = 0, pos = 0;
  while (pos < text.size()) {
    const AddedToken* match = nullptr;
    for (const AddedToken* a : added_by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      if (a->special && !options.allow_special) continue;
      if (text.compare(pos, a->content.size(), a->content) != 0) continue;
      if (a->single_word && (IsWordChar(text, pos, true) || IsWordChar(text, pos + a->content.size(), false))) {
        continue;
      }
      match = a;
      break;
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t begin = match->lstrip ? SkipWhitespaceLeft(text, pos, segment_start) : pos;
    size_t end = pos + match->content.size();
    if (match->rstrip) end = SkipWhitespaceRight(text, end);
    KVC_RETURN_IF_ERROR(EncodeText(text.substr(segment_start, begin - segment_start), &out));
    out.push_back(match->id);
    segment_start = pos = end;
  }
  KVC_RETURN_IF_ERROR(EncodeText(text.substr(segment_start), &out));
  return out;
}

absl::StatusOr<std::string> BpeTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_bytes_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                                                   id_to_bytes_.size(), ")"));
  }
  return id_to_bytes_[id];
}

absl::StatusOr<std::string> BpeTokenizer::Decode(absl::Span<const int32_t> ids, const DecodeOptions& options) const {
  std::string bytes;
  for (int32_t id : ids) {
    KVC_ASSIGN_OR_RETURN(std::string b, TokenBytes(id));
    if (options.skip_special && IsSpecial(id)) continue;
    bytes += b;
  }
  return Utf8Lossy(bytes);
}

}  // namespace kvc
