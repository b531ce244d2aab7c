#include "compressor/tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utf8proc.h>

#include "absl/strings/str_cat.h"
#include "compressor/tokenizer/utf8.h"

namespace kvc {

const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

struct Span {
  size_t begin, end;
  bool is_match;
};

// Turns the alternating match / gap spans of one piece into output pieces per the behavior.
void Emit(absl::string_view piece, const std::vector<Span>& spans, SplitBehavior behavior,
          std::vector<absl::string_view>* out) {
  auto push = [&](size_t b, size_t e) {
    if (e > b) out->push_back(piece.substr(b, e - b));
  };
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) if (!s.is_match) push(s.begin, s.end);
      break;
    case SplitBehavior::kIsolated:
      for (const Span& s : spans) push(s.begin, s.end);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      size_t start = 0;
      for (const Span& s : spans) {
        if (s.is_match) {
          push(start, s.end);
          start = s.end;
        }
      }
      push(start, piece.size());
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      size_t start = 0;
      for (const Span& s : spans) {
        if (s.is_match && s.begin > start) {
          push(start, s.begin);
          start = s.begin;
        }
      }
      push(start, piece.size());
      break;
    }
    case SplitBehavior::kContiguous: {
      size_t i = 0;
      while (i < spans.size()) {
        size_t j = i;
        while (j + 1 < spans.size() && spans[j + 1].is_match == spans[i].is_match && spans[i].is_match) ++j;
        push(spans[i].begin, spans[j].end);
        i = j + 1;
      }
      break;
    }
  }
}

void AddGapsAndMatches(size_t len, std::vector<std::pair<size_t, size_t>>& matches, bool invert,
                       std::vector<Span>* spans) {
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (b > prev) spans->push_back({prev, b, invert});
    spans->push_back({b, e, !invert});
    prev = e;
  }
  if (prev < len) spans->push_back({prev, len, invert});
}

// Per-thread matching state. An ovector of one pair is enough: only whole matches are used. Long
// whitespace runs recurse deeply in JIT code, so the JIT stack may grow to 8 MiB instead of failing.
struct MatchScratch {
  MatchScratch()
      : match_data(pcre2_match_data_create(1, nullptr)),
        context(pcre2_match_context_create(nullptr)),
        jit_stack(pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr)) {
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(match_data);
  }
  pcre2_match_data* match_data;
  pcre2_match_context* context;
  pcre2_jit_stack* jit_stack;
};

class RegexSplit : public SplitStep {
 public:
  RegexSplit(pcre2_code* code, SplitBehavior behavior, bool invert)
      : code_(code), behavior_(behavior), invert_(invert) {}
  ~RegexSplit() override { pcre2_code_free(code_); }

  absl::Status Split(absl::string_view piece, std::vector<absl::string_view>* out) const override {
    thread_local MatchScratch scratch;
    pcre2_match_data* md = scratch.match_data;
    pcre2_match_context* mctx = scratch.context;
    std::vector<std::pair<size_t, size_t>> matches;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
    size_t offset = 0;
    while (offset <= piece.size()) {
      int rc = pcre2_match(code_, subject, piece.size(), offset, PCRE2_NO_UTF_CHECK, md, mctx);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0 && rc != 0) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(rc, buf, sizeof(buf));
        return absl::InternalError(absl::StrCat("pre-tokenizer regex failed: ", reinterpret_cast<char*>(buf)));
      }
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {
        // Empty match: step over one whole character.
        size_t step = 1;
        while (b + step < piece.size() && (static_cast<unsigned char>(piece[b + step]) & 0xC0) == 0x80) ++step;
        offset = b + step;
        continue;
      }
      matches.emplace_back(b, e);
      offset = e;
    }
    std::vector<Span> spans;
    AddGapsAndMatches(piece.size(), matches, invert_, &spans);
    Emit(piece, spans, behavior_, out);
    return absl::OkStatus();
  }

 private:
  pcre2_code* code_;
  SplitBehavior behavior_;
  bool invert_;
};

// Rust's char::is_numeric, which Hugging Face's Digits uses: general categories Nd, Nl and No.
bool IsNumeric(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  utf8proc_category_t cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

class DigitsSplit : public SplitStep {
 public:
  explicit DigitsSplit(bool individual) : individual_(individual) {}
  absl::Status Split(absl::string_view piece, std::vector<absl::string_view>* out) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    size_t i = 0;
    while (i < piece.size()) {
      uint32_t cp = 0;
      size_t n = DecodeUtf8(piece, i, &cp);
      if (n == 0) n = 1;  // input is validated before pre-tokenization; never loop forever regardless
      if (IsNumeric(cp)) matches.emplace_back(i, i + n);
      i += n;
    }
    std::vector<Span> spans;
    AddGapsAndMatches(piece.size(), matches, false, &spans);
    Emit(piece, spans, individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, out);
    return absl::OkStatus();
  }

 private:
  bool individual_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SplitStep>> MakeRegexSplit(const std::string& pattern, SplitBehavior behavior,
                                                          bool invert) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    return absl::InvalidArgumentError(absl::StrCat("pre-tokenizer regex does not compile at offset ", err_off,
                                                   ": ", reinterpret_cast<char*>(buf)));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter where JIT is unavailable
  return std::unique_ptr<SplitStep>(new RegexSplit(code, behavior, invert));
}

std::unique_ptr<SplitStep> MakeDigitsSplit(bool individual_digits) {
  return std::make_unique<DigitsSplit>(individual_digits);
}

absl::Status PreTokenizer::Split(absl::string_view text, std::vector<absl::string_view>* out) const {
  std::vector<absl::string_view> current{text}, next;
  for (const auto& step : steps_) {
    next.clear();
    for (absl::string_view piece : current) {
      absl::Status s = step->Split(piece, &next);
      if (!s.ok()) return s;
    }
    current.swap(next);
  }
  for (absl::string_view p : current) {
    if (!p.empty()) out->push_back(p);
  }
  return absl::OkStatus();
}

}  // namespace kvc
