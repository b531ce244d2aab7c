// How `kvc` prints the API's messages: "key: value" text for people and JSON objects for programs. Both
// layouts are part of the CLI's interface (docs/cli.md); change them only together with that page.
//
// JSON numbers are numbers (int64 included, unlike the proto3 JSON mapping), enums are short lowercase
// names ("f32", "zstd", "eos"), times are seconds and timestamps RFC 3339 in UTC.
//
// Thread safety: pure functions.
#ifndef KVC_CLIENT_CPP_CLI_OUTPUT_FORMAT_H_
#define KVC_CLIENT_CPP_CLI_OUTPUT_FORMAT_H_

#include <iosfwd>
#include <string>

#include <google/protobuf/timestamp.pb.h>
#include <nlohmann/json.hpp>

#include "proto/kvc/v1/cache.pb.h"
#include "proto/kvc/v1/common.pb.h"
#include "proto/kvc/v1/compressor.pb.h"
#include "proto/kvc/v1/generator.pb.h"

namespace kvc::cli {

// "f32", "bf16", "f16", "int8"; "unspecified" for 0.
std::string DtypeName(kvc::v1::CacheDtype dtype);
// "none", "zstd"; "unspecified" for 0.
std::string CodecName(kvc::v1::CacheCodec codec);
// "length", "eos", "stop"; "unspecified" for 0.
std::string FinishReasonName(kvc::v1::FinishReason reason);
// "2024-05-01T12:00:00Z"; "-" when unset.
std::string TimestampText(const google::protobuf::Timestamp& time);
// tokens_in / tokens_out, 0 when tokens_out is 0.
double CompressionRatio(const kvc::v1::CacheInfo& info);

// The CacheInfo block: one "key: value" line per field (cache_id first unless `with_id` is false;
// timings last, when set).
void PrintCacheInfo(std::ostream& out, const kvc::v1::CacheInfo& info, bool with_id = true);
nlohmann::json CacheInfoJson(const kvc::v1::CacheInfo& info);

// "queue=0.000s tokenize=0.012s prefill=1.204s compress=0.010s serialize=0.003s store=0.001s total=1.230s"
std::string TimingsLine(const kvc::v1::Timings& t);
nlohmann::json TimingsJson(const kvc::v1::Timings& t);

// "cached_tokens=154 prompt_tokens=21 generated_tokens=9 finish=eos time_to_first_token=0.052s"
std::string UsageLine(const kvc::v1::Usage& usage);
// "queue=0.000s load=0.004s compose=0.000s prefill=0.031s decode=0.210s total=0.262s tokens_per_second=38.1"
std::string GenerateTimingsLine(const kvc::v1::GenerateTimings& t);
nlohmann::json UsageJson(const kvc::v1::Usage& usage);

// One `cache ls` line: "<cache_id>  <bytes>  <created>  <last_access>".
std::string CacheEntryLine(const kvc::v1::CacheEntry& entry);
nlohmann::json CacheEntryJson(const kvc::v1::CacheEntry& entry);

void PrintModelInfo(std::ostream& out, const kvc::v1::ModelInfo& info);
nlohmann::json ModelInfoJson(const kvc::v1::ModelInfo& info);

}  // namespace kvc::cli

#endif  // KVC_CLIENT_CPP_CLI_OUTPUT_FORMAT_H_
