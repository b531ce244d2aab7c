#include "compressor/methods/options.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvc {

absl::StatusOr<MethodOptions> MethodOptions::Parse(const std::string& method,
                                                   const std::map<std::string, std::string>& options,
                                                   const std::set<std::string>& known) {
  for (const auto& [name, value] : options) {
    if (!known.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "options.", name, ": unknown option for method ", method,
          known.empty() ? " (it takes none)" : absl::StrCat(" (known: ", absl::StrJoin(known, ", "), ")")));
    }
  }
  MethodOptions o;
  o.method_ = method;
  o.options_ = options;
  return o;
}

absl::StatusOr<int64_t> MethodOptions::Int(const std::string& name, int64_t fallback, int64_t min,
                                           int64_t max) const {
  auto it = options_.find(name);
  if (it == options_.end()) return fallback;
  int64_t v = 0;
  if (!absl::SimpleAtoi(it->second, &v)) {
    return absl::InvalidArgumentError(absl::StrCat("options.", name, ": '", it->second, "' is not an integer"));
  }
  if (v < min || v > max) {
    return absl::OutOfRangeError(absl::StrCat("options.", name, ": ", v, " is outside [", min, ", ", max, "]"));
  }
  return v;
}

absl::StatusOr<bool> MethodOptions::Bool(const std::string& name, bool fallback) const {
  auto it = options_.find(name);
  if (it == options_.end()) return fallback;
  const std::string& v = it->second;
  if (v == "1" || v == "true" || v == "on" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "off" || v == "no") return false;
  return absl::InvalidArgumentError(absl::StrCat("options.", name, ": '", v, "' is not a boolean (on/off)"));
}

absl::StatusOr<std::string> MethodOptions::Choice(const std::string& name, const std::string& fallback,
                                                  const std::set<std::string>& allowed) const {
  auto it = options_.find(name);
  if (it == options_.end()) return fallback;
  if (!allowed.count(it->second)) {
    return absl::InvalidArgumentError(absl::StrCat("options.", name, ": '", it->second, "' is not one of ",
                                                   absl::StrJoin(allowed, ", ")));
  }
  return it->second;
}

absl::StatusOr<int64_t> KeptTokens(double ratio, int64_t target_tokens, int64_t context_len) {
  if (context_len < 1) return absl::InvalidArgumentError("context: no tokens to compress");
  bool has_ratio = ratio != 0, has_target = target_tokens != 0;
  if (has_ratio && has_target) {
    return absl::InvalidArgumentError("ratio and target_tokens are exclusive: give one budget");
  }
  if (!has_ratio && !has_target) return absl::InvalidArgumentError("ratio or target_tokens is required");
  if (has_target) {
    if (target_tokens < 1) return absl::OutOfRangeError(absl::StrCat("target_tokens: ", target_tokens, " must be >= 1"));
    if (target_tokens > context_len) {
      return absl::OutOfRangeError(absl::StrCat("target_tokens: ", target_tokens, " is larger than the context (",
                                                context_len, " tokens)"));
    }
    return target_tokens;
  }
  if (!std::isfinite(ratio) || ratio < 1) {
    return absl::OutOfRangeError(absl::StrCat("ratio: ", ratio, " must be >= 1 (original/kept; 8 means 8x)"));
  }
  // floor(len / ratio), with a nudge so that 200 / 10 is 20 and not 19.999...; for kvpress's ratios (2, 8)
  // this equals its int(len * (1 - compression_ratio)).
  int64_t kept = static_cast<int64_t>(std::floor(static_cast<double>(context_len) / ratio + 1e-9));
  return std::max<int64_t>(1, kept);
}

}  // namespace kvc
