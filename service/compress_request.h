// The compress role's request pieces, checked and converted: a wire CompressionSpec into the library's
// spec and method, the storage choice, documents and token ids, the prefix and the suffix. Every error has
// the status code proto/kvc/v1 documents and a message that starts with the request field it is about
// (e.g. "documents[1].token_ids[5]: ...", "spec.options.chunk_tokens: ...").
//
// Thread safety: pure functions over an immutable runtime.
#ifndef KVC_SERVICE_COMPRESS_REQUEST_H_
#define KVC_SERVICE_COMPRESS_REQUEST_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compressor/format/kvc_dtype.h"
#include "compressor/methods/compression.h"
#include "proto/kvc/v1/common.pb.h"
#include "proto/kvc/v1/compressor.pb.h"
#include "service/cache_id.h"
#include "service/model_runtime.h"

namespace kvc {

// The request limits of the compress role, reported as ModelInfo.limits. 0 means no limit of its own.
struct CompressorLimits {
  int64_t max_context_tokens = 131072;  // prefix + documents, per request (per document for Precompute)
  int64_t max_query_tokens = 4096;      // the encoded suffix
  int32_t max_documents = 256;          // documents or document_cache_ids per request
  // Reported only: the server applies them (gRPC's message limits, the scheduler's admission).
  int64_t max_message_bytes = int64_t{64} << 20;
  int64_t max_queue_tokens = 0;
};

// System prompts longer than this once encoded are OUT_OF_RANGE (compressor.proto).
inline constexpr int64_t kMaxSystemPromptTokens = 4096;
// Document.id is a caller label of at most this many bytes.
inline constexpr size_t kMaxDocumentIdBytes = 256;

// A wire spec after defaults and checks, with the method built from it.
struct ParsedSpec {
  CompressionSpec spec;  // method after defaults; ratio / target_tokens 0 when unused
  std::shared_ptr<const CompressionMethod> method;
  bool query_aware = false;

  // Whether the query decides what is kept. SnapKV with a fixed window scores with the context's own last
  // tokens, but a prefilled context (document_cache_ids) has no queries of its own left, so there the
  // query's rows vote instead: the query is then needed, and part of the cache id.
  bool UsesQuery(bool prefilled) const { return query_aware || (prefilled && spec.method == "snapkv"); }
};

// Method "" becomes "focus" (docs/methods.md says why). A budget is required except for "none", which ignores it: neither is
// INVALID_ARGUMENT; ratio < 1, NaN or infinite, or target_tokens < 1, OUT_OF_RANGE. Unknown methods,
// option names and unparsable values INVALID_ARGUMENT, values out of range OUT_OF_RANGE, as the methods
// library decides; its messages are qualified with "spec.".
absl::StatusOr<ParsedSpec> ParseSpec(const kvc::v1::CompressionSpec& spec);

// The methods the server offers, sorted by name.
const std::vector<std::string>& KnownMethods();

// Prefixes "spec." to the methods library's messages about spec fields ("ratio: ...", "options.x: ...",
// "method: ..."), so that they name the request field; other statuses pass through unchanged.
absl::Status QualifySpecError(const absl::Status& status);

// Unset enum values take the documented defaults (F32, NONE); values outside the enum INVALID_ARGUMENT.
absl::StatusOr<KvcDtype> ParseCacheDtype(kvc::v1::CacheDtype dtype);
absl::StatusOr<KvcCodec> ParseCacheCodec(kvc::v1::CacheCodec codec);

// Every id in [0, vocab_size), else INVALID_ARGUMENT naming `field` and the index ("<field>[i]").
absl::Status CheckTokenIds(const kvc::v1::TokenIds& ids, int64_t vocab_size, absl::string_view field);

// Content set and non-empty, ids in the vocabulary, label at most kMaxDocumentIdBytes. `field` is e.g.
// "documents[2]". Cheap: no tokenization.
absl::Status CheckDocument(const kvc::v1::Document& document, int64_t vocab_size, absl::string_view field);

// The protected prefix for a request's optional system prompt (unset: kDefaultSystemPrompt; empty: no
// system turn). OUT_OF_RANGE when the system prompt encodes to more than kMaxSystemPromptTokens.
absl::StatusOr<std::vector<int64_t>> EncodeRequestPrefix(const ModelRuntime& runtime,
                                                         const std::optional<std::string>& system_prompt);

// One document's token ids: its text encoded as plain content, or its ids as given.
absl::StatusOr<std::vector<int64_t>> EncodeRequestDocument(const ModelRuntime& runtime,
                                                           const kvc::v1::Document& document);

// The suffix of a Compress request: query encoded with the chat template, or suffix_ids as given; empty
// when neither is set. OUT_OF_RANGE past max_query_tokens (0: no limit).
absl::StatusOr<std::vector<int64_t>> EncodeRequestSuffix(const ModelRuntime& runtime,
                                                         const kvc::v1::CompressRequest& request,
                                                         int64_t max_query_tokens);

// `status` with "field: " in front of its message; OK stays OK.
absl::Status WithField(const absl::Status& status, absl::string_view field);

// The context of a Compress: [prefix][documents[0]]["\n\n" documents[1]]..., and the prefix's length.
// Errors name "system_prompt" or "documents[i]"; OUT_OF_RANGE past max_context_tokens (0: no limit).
struct EncodedContext {
  std::vector<int64_t> tokens;
  int64_t protected_prefix = 0;
};
absl::StatusOr<EncodedContext> EncodeRequestContext(
    const ModelRuntime& runtime, const std::optional<std::string>& system_prompt,
    const google::protobuf::RepeatedPtrField<kvc::v1::Document>& documents, int64_t max_context_tokens);

// OUT_OF_RANGE naming `field` when `tokens` exceeds max_context_tokens (0: no limit).
absl::Status CheckContextLength(int64_t tokens, int64_t max_context_tokens, absl::string_view field);

// The spec, storage and compute dtype part of a cache id; the caller adds the context and the query.
CacheIdInput CacheIdBase(const ModelRuntime& runtime, const CompressionSpec& spec, KvcDtype dtype,
                         KvcCodec codec);

}  // namespace kvc

#endif  // KVC_SERVICE_COMPRESS_REQUEST_H_
