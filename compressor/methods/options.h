// Typed access to CompressionSpec::options with precise errors: each method declares the options it knows;
// anything else is INVALID_ARGUMENT naming the option.
#ifndef KVC_COMPRESSOR_METHODS_OPTIONS_H_
#define KVC_COMPRESSOR_METHODS_OPTIONS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"

namespace kvc {

class MethodOptions {
 public:
  // INVALID_ARGUMENT when `options` holds a name outside `known`.
  static absl::StatusOr<MethodOptions> Parse(const std::string& method, const std::map<std::string, std::string>& options,
                                             const std::set<std::string>& known);

  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback, int64_t min, int64_t max) const;
  absl::StatusOr<bool> Bool(const std::string& name, bool fallback) const;
  // One of `allowed`.
  absl::StatusOr<std::string> Choice(const std::string& name, const std::string& fallback,
                                     const std::set<std::string>& allowed) const;
  bool Has(const std::string& name) const { return options_.count(name) > 0; }
  const std::string& Raw(const std::string& name) const { return options_.at(name); }

 private:
  std::string method_;
  std::map<std::string, std::string> options_;
};

// The number of context tokens to keep for `context_len` under the spec's ratio or target_tokens.
// OUT_OF_RANGE for ratio < 1, target_tokens < 1 or > context_len; INVALID_ARGUMENT when both or neither
// are given. The messages name the field.
absl::StatusOr<int64_t> KeptTokens(double ratio, int64_t target_tokens, int64_t context_len);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_METHODS_OPTIONS_H_
