// Command-line flags that several subcommands share and the request fields they fill: the compression
// spec and storage choice (compress, ask, precompute) and the sampling controls (generate, ask).
//
// Range checks are left to the server, so that the user sees the server's own message naming the field;
// only the shape of a value (a number, NAME=VALUE, a known dtype name) is checked here, as a usage error.
//
// Ownership: the flag structs must outlive the CLI::App they are registered on.
#ifndef KVC_CLIENT_CPP_CLI_REQUEST_FLAGS_H_
#define KVC_CLIENT_CPP_CLI_REQUEST_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "proto/kvc/v1/common.pb.h"
#include "proto/kvc/v1/compressor.pb.h"

namespace kvc::cli {

// `validator` without its description, which CLI11 would append to the value's name in --help
// ("FILE:FILE"); the option's own help text says what is accepted.
inline CLI::Validator Quiet(const CLI::Validator& validator) { return validator.description(""); }

struct SpecFlags {
  std::string method;
  double ratio = 0;
  int64_t target_tokens = 0;
  std::vector<std::string> options;  // NAME=VALUE
  std::string dtype;                 // "" = server default
  std::string codec;
  std::string system_prompt;
  std::string model;

  CLI::Option* ratio_option = nullptr;
  CLI::Option* target_option = nullptr;
  CLI::Option* system_prompt_option = nullptr;

  // `method_help` describes --method for this subcommand (its default differs between them).
  void Register(CLI::App* app, const std::string& method_help);
  // CompressionSpec from --method, --ratio / --target-tokens and --option.
  kvc::v1::CompressionSpec Spec() const;
  kvc::v1::CacheDtype Dtype() const;
  kvc::v1::CacheCodec Codec() const;
  bool has_system_prompt() const { return system_prompt_option != nullptr && system_prompt_option->count() > 0; }
};

struct SamplingFlags {
  double temperature = 0;
  int32_t top_k = 0;
  double top_p = 1;
  uint64_t seed = 0;
  int32_t max_tokens = 0;
  std::vector<std::string> stop;
  bool ignore_eos = false;

  CLI::Option* top_p_option = nullptr;
  CLI::Option* max_tokens_option = nullptr;

  void Register(CLI::App* app);
  kvc::v1::SamplingParams Params() const;
};

// The flags of `compress` and `ask` that make a CompressRequest.
struct CompressFlags {
  std::vector<std::string> files;  // text documents; "-" or none: stdin
  std::vector<std::string> document_cache_ids;
  std::string query;
  CLI::Option* query_option = nullptr;
  SpecFlags spec;

  // `query_required`: ask needs the query for Generate as well.
  void Register(CLI::App* app, bool query_required);
  // Reads the documents (from `stdin_stream` when asked to). INVALID_ARGUMENT or NOT_FOUND for unreadable
  // input or documents given both as files and as --document-cache-id.
  absl::StatusOr<kvc::v1::CompressRequest> Request(std::istream& stdin_stream) const;
};

}  // namespace kvc::cli

#endif  // KVC_CLIENT_CPP_CLI_REQUEST_FLAGS_H_
