#include "client/cpp/cli/output_format.h"

#include <algorithm>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace kvc::cli {
namespace {

std::string Seconds(double s) { return absl::StrFormat("%.3fs", s); }

std::string BudgetText(const kvc::v1::CompressionSpec& spec) {
  switch (spec.budget_case()) {
    case kvc::v1::CompressionSpec::kRatio:
      return absl::StrFormat("ratio=%g", spec.ratio());
    case kvc::v1::CompressionSpec::kTargetTokens:
      return absl::StrCat("target_tokens=", spec.target_tokens());
    case kvc::v1::CompressionSpec::BUDGET_NOT_SET:
      break;
  }
  return "none";
}

// Proto maps iterate in no particular order; output must not depend on it.
std::map<std::string, std::string> SortedOptions(const kvc::v1::CompressionSpec& spec) {
  return std::map<std::string, std::string>(spec.options().begin(), spec.options().end());
}

nlohmann::json SpecJson(const kvc::v1::CompressionSpec& spec) {
  nlohmann::json j = {{"method", spec.method()}};
  if (spec.budget_case() == kvc::v1::CompressionSpec::kRatio) j["ratio"] = spec.ratio();
  if (spec.budget_case() == kvc::v1::CompressionSpec::kTargetTokens) j["target_tokens"] = spec.target_tokens();
  nlohmann::json options = nlohmann::json::object();
  for (const auto& [name, value] : SortedOptions(spec)) options[name] = value;
  j["options"] = std::move(options);
  return j;
}

double TokensPerSecond(double mean_seconds_per_token) {
  return mean_seconds_per_token > 0 ? 1.0 / mean_seconds_per_token : 0.0;
}

}  // namespace

std::string DtypeName(kvc::v1::CacheDtype dtype) {
  switch (dtype) {
    case kvc::v1::CACHE_DTYPE_F32: return "f32";
    case kvc::v1::CACHE_DTYPE_BF16: return "bf16";
    case kvc::v1::CACHE_DTYPE_F16: return "f16";
    case kvc::v1::CACHE_DTYPE_INT8: return "int8";
    default: return "unspecified";
  }
}

std::string CodecName(kvc::v1::CacheCodec codec) {
  switch (codec) {
    case kvc::v1::CACHE_CODEC_NONE: return "none";
    case kvc::v1::CACHE_CODEC_ZSTD: return "zstd";
    default: return "unspecified";
  }
}

std::string FinishReasonName(kvc::v1::FinishReason reason) {
  switch (reason) {
    case kvc::v1::FINISH_REASON_LENGTH: return "length";
    case kvc::v1::FINISH_REASON_EOS: return "eos";
    case kvc::v1::FINISH_REASON_STOP: return "stop";
    default: return "unspecified";
  }
}

std::string TimestampText(const google::protobuf::Timestamp& time) {
  if (time.seconds() == 0 && time.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(time.seconds()), absl::UTCTimeZone());
}

double CompressionRatio(const kvc::v1::CacheInfo& info) {
  return info.tokens_out() > 0 ? static_cast<double>(info.tokens_in()) / static_cast<double>(info.tokens_out())
                               : 0.0;
}

void PrintCacheInfo(std::ostream& out, const kvc::v1::CacheInfo& info, bool with_id) {
  if (with_id) out << "cache_id: " << (info.cache_id().empty() ? "-" : info.cache_id()) << "\n";
  out << "model: " << info.model() << "\n";
  out << "model_fingerprint: " << info.model_fingerprint() << "\n";
  out << "method: " << info.spec().method() << "\n";
  out << "budget: " << BudgetText(info.spec()) << "\n";
  std::vector<std::string> options;
  for (const auto& [name, value] : SortedOptions(info.spec())) options.push_back(absl::StrCat(name, "=", value));
  out << "options: " << (options.empty() ? "-" : absl::StrJoin(options, " ")) << "\n";
  out << "tokens_in: " << info.tokens_in() << "\n";
  out << "tokens_out: " << info.tokens_out() << "\n";
  out << "compression: " << absl::StrFormat("%.2fx", CompressionRatio(info)) << "\n";
  out << "prefix_tokens: " << info.prefix_tokens() << "\n";
  out << "next_position: " << info.next_position() << "\n";
  out << "layers: " << info.layers() << "\n";
  out << "kv_heads: " << info.kv_heads() << "\n";
  out << "head_dim: " << info.head_dim() << "\n";
  out << "dtype: " << DtypeName(info.dtype()) << "\n";
  out << "codec: " << CodecName(info.codec()) << "\n";
  out << "bytes: " << info.bytes() << "\n";
  out << "format_version: " << info.format_version() << "\n";
  if (info.has_timings()) out << "timings: " << TimingsLine(info.timings()) << "\n";
}

nlohmann::json CacheInfoJson(const kvc::v1::CacheInfo& info) {
  nlohmann::json j = {
      {"cache_id", info.cache_id()},
      {"model", info.model()},
      {"model_fingerprint", info.model_fingerprint()},
      {"spec", SpecJson(info.spec())},
      {"tokens_in", info.tokens_in()},
      {"tokens_out", info.tokens_out()},
      {"compression_ratio", CompressionRatio(info)},
      {"prefix_tokens", info.prefix_tokens()},
      {"next_position", info.next_position()},
      {"layers", info.layers()},
      {"kv_heads", info.kv_heads()},
      {"head_dim", info.head_dim()},
      {"dtype", DtypeName(info.dtype())},
      {"codec", CodecName(info.codec())},
      {"bytes", info.bytes()},
      {"format_version", info.format_version()},
  };
  if (info.has_timings()) j["timings"] = TimingsJson(info.timings());
  return j;
}

std::string TimingsLine(const kvc::v1::Timings& t) {
  return absl::StrCat("queue=", Seconds(t.queue_seconds()), " tokenize=", Seconds(t.tokenize_seconds()),
                      " prefill=", Seconds(t.prefill_seconds()), " compress=", Seconds(t.compress_seconds()),
                      " serialize=", Seconds(t.serialize_seconds()), " store=", Seconds(t.store_seconds()),
                      " total=", Seconds(t.total_seconds()));
}

nlohmann::json TimingsJson(const kvc::v1::Timings& t) {
  return {{"queue_seconds", t.queue_seconds()},         {"tokenize_seconds", t.tokenize_seconds()},
          {"prefill_seconds", t.prefill_seconds()},     {"compress_seconds", t.compress_seconds()},
          {"serialize_seconds", t.serialize_seconds()}, {"store_seconds", t.store_seconds()},
          {"total_seconds", t.total_seconds()}};
}

std::string UsageLine(const kvc::v1::Usage& usage) {
  return absl::StrCat("cached_tokens=", usage.cached_tokens(), " prompt_tokens=", usage.prompt_tokens(),
                      " generated_tokens=", usage.generated_tokens(),
                      " finish=", FinishReasonName(usage.finish_reason()),
                      " time_to_first_token=", Seconds(usage.time_to_first_token_seconds()));
}

std::string GenerateTimingsLine(const kvc::v1::GenerateTimings& t) {
  return absl::StrCat("queue=", Seconds(t.queue_seconds()), " load=", Seconds(t.load_seconds()),
                      " compose=", Seconds(t.compose_seconds()), " prefill=", Seconds(t.prefill_seconds()),
                      " decode=", Seconds(t.decode_seconds()), " total=", Seconds(t.total_seconds()),
                      absl::StrFormat(" tokens_per_second=%.1f", TokensPerSecond(t.mean_seconds_per_token())));
}

nlohmann::json UsageJson(const kvc::v1::Usage& usage) {
  const kvc::v1::GenerateTimings& t = usage.timings();
  return {{"cached_tokens", usage.cached_tokens()},
          {"prompt_tokens", usage.prompt_tokens()},
          {"generated_tokens", usage.generated_tokens()},
          {"finish_reason", FinishReasonName(usage.finish_reason())},
          {"time_to_first_token_seconds", usage.time_to_first_token_seconds()},
          {"timings",
           {{"queue_seconds", t.queue_seconds()},
            {"load_seconds", t.load_seconds()},
            {"compose_seconds", t.compose_seconds()},
            {"prefill_seconds", t.prefill_seconds()},
            {"decode_seconds", t.decode_seconds()},
            {"mean_seconds_per_token", t.mean_seconds_per_token()},
            {"total_seconds", t.total_seconds()}}}};
}

std::string CacheEntryLine(const kvc::v1::CacheEntry& entry) {
  return absl::StrCat(entry.cache_id(), "  ", entry.bytes(), "  ", TimestampText(entry.created()), "  ",
                      TimestampText(entry.last_access()));
}

nlohmann::json CacheEntryJson(const kvc::v1::CacheEntry& entry) {
  return {{"cache_id", entry.cache_id()},
          {"bytes", entry.bytes()},
          {"created", TimestampText(entry.created())},
          {"last_access", TimestampText(entry.last_access())}};
}

void PrintModelInfo(std::ostream& out, const kvc::v1::ModelInfo& info) {
  out << "name: " << info.name() << "\n";
  out << "fingerprint: " << info.fingerprint() << "\n";
  out << "architecture: " << info.architecture() << "\n";
  out << "layers: " << info.num_layers() << "\n";
  out << "heads: " << info.num_heads() << "\n";
  out << "kv_heads: " << info.num_kv_heads() << "\n";
  out << "head_dim: " << info.head_dim() << "\n";
  out << "vocab_size: " << info.vocab_size() << "\n";
  out << "max_position_embeddings: " << info.max_position_embeddings() << "\n";
  out << "device: " << info.device() << "\n";
  out << "dtype: " << info.dtype() << "\n";
  out << "chat_format: " << info.chat_format() << "\n";
  out << "bos_token_id: " << info.bos_token_id() << "\n";
  out << "eos_token_ids: " << (info.eos_token_ids().empty() ? "-" : absl::StrJoin(info.eos_token_ids(), " "))
      << "\n";
  out << "format_version: " << info.format_version() << "\n";
  const kvc::v1::ServerLimits& l = info.limits();
  out << "limits: max_context_tokens=" << l.max_context_tokens() << " max_query_tokens=" << l.max_query_tokens()
      << " max_documents=" << l.max_documents() << " max_message_bytes=" << l.max_message_bytes()
      << " max_queue_tokens=" << l.max_queue_tokens() << "\n";
  out << "methods:\n";
  for (const kvc::v1::MethodInfo& method : info.methods()) {
    out << "  " << method.name() << (method.query_aware() ? " (query-aware)" : "") << "\n";
    for (const kvc::v1::MethodOption& option : method.options()) {
      out << "    " << option.name() << " = " << option.default_value();
      if (!option.description().empty()) out << "  # " << option.description();
      out << "\n";
    }
  }
}

nlohmann::json ModelInfoJson(const kvc::v1::ModelInfo& info) {
  nlohmann::json methods = nlohmann::json::array();
  for (const kvc::v1::MethodInfo& method : info.methods()) {
    nlohmann::json options = nlohmann::json::array();
    for (const kvc::v1::MethodOption& option : method.options()) {
      options.push_back({{"name", option.name()},
                         {"default_value", option.default_value()},
                         {"description", option.description()}});
    }
    methods.push_back({{"name", method.name()}, {"query_aware", method.query_aware()}, {"options", options}});
  }
  const kvc::v1::ServerLimits& l = info.limits();
  return {{"name", info.name()},
          {"fingerprint", info.fingerprint()},
          {"architecture", info.architecture()},
          {"num_layers", info.num_layers()},
          {"num_heads", info.num_heads()},
          {"num_kv_heads", info.num_kv_heads()},
          {"head_dim", info.head_dim()},
          {"vocab_size", info.vocab_size()},
          {"max_position_embeddings", info.max_position_embeddings()},
          {"device", info.device()},
          {"dtype", info.dtype()},
          {"chat_format", info.chat_format()},
          {"bos_token_id", info.bos_token_id()},
          {"eos_token_ids", std::vector<int32_t>(info.eos_token_ids().begin(), info.eos_token_ids().end())},
          {"format_version", info.format_version()},
          {"limits",
           {{"max_context_tokens", l.max_context_tokens()},
            {"max_query_tokens", l.max_query_tokens()},
            {"max_documents", l.max_documents()},
            {"max_message_bytes", l.max_message_bytes()},
            {"max_queue_tokens", l.max_queue_tokens()}}},
          {"methods", methods}};
}

}  // namespace kvc::cli
