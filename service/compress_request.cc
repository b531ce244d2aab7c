#include "service/compress_request.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "compressor/util/status_macros.h"

namespace kvc {
absl::Status WithField(const absl::Status& status, absl::string_view field) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(field, ": ", status.message()));
}

const std::vector<std::string>& KnownMethods() {
  static const auto* const kMethods = new std::vector<std::string>{"finch", "focus", "knorm", "none", "novelty",
                                                                   "random", "recall", "snapkv", "streaming_llm",
                                                                   "truncate"};
  return *kMethods;
}

absl::Status QualifySpecError(const absl::Status& status) {
  if (status.ok()) return status;
  const absl::string_view m = status.message();
  for (absl::string_view field : {"ratio", "target_tokens", "method", "options."}) {
    if (absl::StartsWith(m, field)) return absl::Status(status.code(), absl::StrCat("spec.", m));
  }
  return status;
}

absl::StatusOr<ParsedSpec> ParseSpec(const kvc::v1::CompressionSpec& wire) {
  ParsedSpec out;
  CompressionSpec& spec = out.spec;
  spec.method = wire.method().empty() ? "focus" : wire.method();
  const std::vector<std::string>& known = KnownMethods();
  if (std::find(known.begin(), known.end(), spec.method) == known.end()) {
    return absl::InvalidArgumentError(absl::StrCat("spec.method: unknown method '", spec.method,
                                                   "' (known: ", absl::StrJoin(known, ", "), ")"));
  }
  if (spec.method != "none") {
    switch (wire.budget_case()) {
      case kvc::v1::CompressionSpec::kRatio:
        if (!std::isfinite(wire.ratio()) || wire.ratio() < 1) {
          return absl::OutOfRangeError(absl::StrCat("spec.ratio: ", wire.ratio(),
                                                    " must be a finite number >= 1 (original/kept; 8 means 8x)"));
        }
        spec.ratio = wire.ratio();
        break;
      case kvc::v1::CompressionSpec::kTargetTokens:
        if (wire.target_tokens() < 1) {
          return absl::OutOfRangeError(
              absl::StrCat("spec.target_tokens: ", wire.target_tokens(), " must be >= 1"));
        }
        spec.target_tokens = wire.target_tokens();
        break;
      case kvc::v1::CompressionSpec::BUDGET_NOT_SET:
        return absl::InvalidArgumentError(absl::StrCat("spec: method ", spec.method,
                                                       " needs a budget: set spec.ratio or spec.target_tokens"));
    }
  }
  spec.options = std::map<std::string, std::string>(wire.options().begin(), wire.options().end());
  absl::StatusOr<std::unique_ptr<CompressionMethod>> method = CreateCompressionMethod(spec);
  if (!method.ok()) return QualifySpecError(method.status());
  out.query_aware = (*method)->query_aware();
  out.method = std::move(*method);
  return out;
}

absl::StatusOr<KvcDtype> ParseCacheDtype(kvc::v1::CacheDtype dtype) {
  switch (dtype) {
    case kvc::v1::CACHE_DTYPE_UNSPECIFIED:
    case kvc::v1::CACHE_DTYPE_F32: return KvcDtype::kF32;
    case kvc::v1::CACHE_DTYPE_BF16: return KvcDtype::kBF16;
    case kvc::v1::CACHE_DTYPE_F16: return KvcDtype::kF16;
    case kvc::v1::CACHE_DTYPE_INT8: return KvcDtype::kInt8;
    default: break;
  }
  return absl::InvalidArgumentError(absl::StrCat("cache_dtype: unknown value ", static_cast<int>(dtype)));
}

absl::StatusOr<KvcCodec> ParseCacheCodec(kvc::v1::CacheCodec codec) {
  switch (codec) {
    case kvc::v1::CACHE_CODEC_UNSPECIFIED:
    case kvc::v1::CACHE_CODEC_NONE: return KvcCodec::kNone;
    case kvc::v1::CACHE_CODEC_ZSTD: return KvcCodec::kZstd;
    default: break;
  }
  return absl::InvalidArgumentError(absl::StrCat("cache_codec: unknown value ", static_cast<int>(codec)));
}

absl::Status CheckTokenIds(const kvc::v1::TokenIds& ids, int64_t vocab_size, absl::string_view field) {
  for (int i = 0; i < ids.ids_size(); ++i) {
    const int64_t id = ids.ids(i);
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: token id ", id,
                                                     " is outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDocument(const kvc::v1::Document& document, int64_t vocab_size, absl::string_view field) {
  if (document.has_id() && document.id().size() > kMaxDocumentIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".id: ", document.id().size(), " bytes, at most ",
                                                   kMaxDocumentIdBytes, " are allowed"));
  }
  switch (document.content_case()) {
    case kvc::v1::Document::kText:
      if (document.text().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".text: empty"));
      return absl::OkStatus();
    case kvc::v1::Document::kTokenIds:
      if (document.token_ids().ids().empty()) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".token_ids: empty"));
      }
      return CheckTokenIds(document.token_ids(), vocab_size, absl::StrCat(field, ".token_ids"));
    case kvc::v1::Document::CONTENT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": no content (set text or token_ids)"));
}

absl::StatusOr<std::vector<int64_t>> EncodeRequestPrefix(const ModelRuntime& runtime,
                                                         const std::optional<std::string>& system_prompt) {
  const absl::string_view system = system_prompt.has_value() ? absl::string_view(*system_prompt)
                                                             : kDefaultSystemPrompt;
  if (system_prompt.has_value() && !system.empty()) {
    // The template encodes the system prompt as one content segment, so its own encoding is its length.
    absl::StatusOr<std::vector<int64_t>> own = runtime.EncodeDocument(system);
    if (!own.ok()) return WithField(own.status(), "system_prompt");
    if (static_cast<int64_t>(own->size()) > kMaxSystemPromptTokens) {
      return absl::OutOfRangeError(absl::StrCat("system_prompt: ", own->size(), " tokens, at most ",
                                                kMaxSystemPromptTokens, " are allowed"));
    }
  }
  absl::StatusOr<std::vector<int64_t>> prefix = runtime.EncodePrefix(system);
  if (!prefix.ok()) return WithField(prefix.status(), "system_prompt");
  return prefix;
}

absl::StatusOr<std::vector<int64_t>> EncodeRequestDocument(const ModelRuntime& runtime,
                                                           const kvc::v1::Document& document) {
  if (document.content_case() == kvc::v1::Document::kTokenIds) {
    const auto& ids = document.token_ids().ids();
    return std::vector<int64_t>(ids.begin(), ids.end());
  }
  return runtime.EncodeDocument(document.text());
}

absl::StatusOr<EncodedContext> EncodeRequestContext(
    const ModelRuntime& runtime, const std::optional<std::string>& system_prompt,
    const google::protobuf::RepeatedPtrField<kvc::v1::Document>& documents, int64_t max_context_tokens) {
  EncodedContext out;
  KVC_ASSIGN_OR_RETURN(out.tokens, EncodeRequestPrefix(runtime, system_prompt));
  out.protected_prefix = static_cast<int64_t>(out.tokens.size());
  for (int i = 0; i < documents.size(); ++i) {
    absl::StatusOr<std::vector<int64_t>> doc = EncodeRequestDocument(runtime, documents.Get(i));
    if (!doc.ok()) return WithField(doc.status(), absl::StrCat("documents[", i, "]"));
    if (i > 0) {
      const std::vector<int64_t>& sep = runtime.document_separator();
      out.tokens.insert(out.tokens.end(), sep.begin(), sep.end());
    }
    out.tokens.insert(out.tokens.end(), doc->begin(), doc->end());
  }
  KVC_RETURN_IF_ERROR(CheckContextLength(static_cast<int64_t>(out.tokens.size()), max_context_tokens, "documents"));
  return out;
}

absl::StatusOr<std::vector<int64_t>> EncodeRequestSuffix(const ModelRuntime& runtime,
                                                         const kvc::v1::CompressRequest& request,
                                                         int64_t max_query_tokens) {
  std::vector<int64_t> suffix;
  absl::string_view field = "query";
  switch (request.question_case()) {
    case kvc::v1::CompressRequest::kQuery: {
      if (request.query().empty()) return suffix;
      absl::StatusOr<std::vector<int64_t>> encoded = runtime.EncodeSuffix(request.query());
      if (!encoded.ok()) return WithField(encoded.status(), field);
      suffix = *std::move(encoded);
      break;
    }
    case kvc::v1::CompressRequest::kSuffixIds:
      field = "suffix_ids";
      suffix.assign(request.suffix_ids().ids().begin(), request.suffix_ids().ids().end());
      break;
    case kvc::v1::CompressRequest::QUESTION_NOT_SET:
      return suffix;
  }
  if (max_query_tokens > 0 && static_cast<int64_t>(suffix.size()) > max_query_tokens) {
    return absl::OutOfRangeError(absl::StrCat(field, ": ", suffix.size(), " tokens once encoded, over ",
                                              "limits.max_query_tokens = ", max_query_tokens));
  }
  return suffix;
}

absl::Status CheckContextLength(int64_t tokens, int64_t max_context_tokens, absl::string_view field) {
  if (max_context_tokens > 0 && tokens > max_context_tokens) {
    return absl::OutOfRangeError(absl::StrCat(field, ": the context (prefix and documents) is ", tokens,
                                              " tokens, over limits.max_context_tokens = ", max_context_tokens));
  }
  return absl::OkStatus();
}

CacheIdInput CacheIdBase(const ModelRuntime& runtime, const CompressionSpec& spec, KvcDtype dtype,
                         KvcCodec codec) {
  CacheIdInput in;
  in.fingerprint = runtime.fingerprint();
  in.method = spec.method;
  if (spec.method != "none") {
    if (spec.target_tokens != 0) {
      in.target_tokens = spec.target_tokens;
    } else {
      in.ratio = spec.ratio;
    }
  }
  in.options = spec.options;
  in.dtype = dtype;
  in.codec = codec;
  in.compute_dtype = runtime.dtype();
  in.weights = runtime.weights();
  return in;
}

}  // namespace kvc
