#include "compressor/explain/kept_page.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "compressor/tokenizer/utf8.h"

namespace kvc {
namespace {

std::string Escape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> KeptCounts(const std::vector<torch::Tensor>& kept_positions,
                                                int64_t context_len) {
  std::vector<int64_t> counts(context_len, 0);
  for (const torch::Tensor& layer : kept_positions) {
    torch::Tensor flat = layer.to(torch::kCPU).to(torch::kInt64).flatten().contiguous();
    const int64_t* p = flat.data_ptr<int64_t>();
    for (int64_t i = 0; i < flat.numel(); ++i) {
      if (p[i] == -1) continue;  // padding of a head that keeps fewer entries
      if (p[i] < 0 || p[i] >= context_len) {
        return absl::InvalidArgumentError(
            absl::StrCat("kept position ", p[i], " is outside the context of ", context_len, " tokens"));
      }
      ++counts[p[i]];
    }
  }
  return counts;
}

absl::StatusOr<std::vector<std::string>> TokenTexts(const Tokenizer& tokenizer, absl::Span<const int64_t> ids) {
  std::vector<std::string> texts;
  std::string pending;  // bytes of a character not yet complete
  for (int64_t id : ids) {
    if (id < 0 || id >= tokenizer.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
    }
    absl::StatusOr<std::string> bytes = tokenizer.TokenBytes(static_cast<int32_t>(id));
    if (!bytes.ok()) return bytes.status();
    pending += *bytes;
    const size_t complete = Utf8CompletePrefix(pending);
    texts.push_back(Utf8Lossy(pending.substr(0, complete)));
    pending.erase(0, complete);
  }
  if (!pending.empty() && !texts.empty()) texts.back() += Utf8Lossy(pending);
  return texts;
}

absl::StatusOr<std::string> RenderKeptPage(const KeptPageInput& in) {
  if (in.token_text.size() != in.kept_by.size()) {
    return absl::InvalidArgumentError(absl::StrCat(in.token_text.size(), " token texts for ", in.kept_by.size(),
                                                   " kept counts"));
  }
  if (in.slots < 1) return absl::InvalidArgumentError("slots: must be >= 1");
  const int64_t n = static_cast<int64_t>(in.kept_by.size());
  int64_t any = 0;
  for (int64_t c : in.kept_by) any += c > 0;
  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kvc: what ", Escape(in.method),
      " kept</title>\n<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.5}"
      ".doc{white-space:pre-wrap;font-family:monospace;border:1px solid #ccc;padding:1em}"
      ".prefix{color:#888}.legend span{padding:0 .5em}</style></head><body>\n",
      "<h1>What ", Escape(in.method), " kept</h1>\n<p class=\"question\"><b>Question:</b> ", Escape(in.question),
      "</p>\n<p class=\"summary\">", Escape(in.budget), ": ", n, " context tokens, ", in.tokens_out,
      " kept per head; ", any, " tokens kept by at least one of the ", in.slots,
      " (layer, KV head) slots. Darker = kept by more slots; white = dropped everywhere.</p>\n",
      "<p class=\"legend\"><span style=\"background:rgba(220,120,0,0.15)\">few</span>"
      "<span style=\"background:rgba(220,120,0,0.55)\">half</span>"
      "<span style=\"background:rgba(220,120,0,0.95)\">all</span></p>\n<div class=\"doc\">");
  for (int64_t i = 0; i < n; ++i) {
    const double share = static_cast<double>(in.kept_by[i]) / static_cast<double>(in.slots);
    char alpha[16];
    std::snprintf(alpha, sizeof(alpha), "%.2f", in.kept_by[i] == 0 ? 0.0 : 0.15 + 0.8 * std::min(share, 1.0));
    absl::StrAppend(&html, "<span", i < in.protected_prefix ? " class=\"prefix\"" : "", " title=\"token ", i,
                    ": kept by ", in.kept_by[i], "/", in.slots, "\" style=\"background:rgba(220,120,0,", alpha,
                    ")\">", Escape(in.token_text[i]), "</span>");
  }
  html += "</div>\n</body></html>\n";
  return html;
}

}  // namespace kvc
