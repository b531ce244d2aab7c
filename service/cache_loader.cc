#include "service/cache_loader.h"

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "compressor/format/kv_cache_adapter.h"
#include "compressor/kv/compose.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

// Keeps the code and names the request field first, so that a client with several ids learns which failed.
absl::Status InField(const absl::Status& status, absl::string_view field) {
  return absl::Status(status.code(), absl::StrCat(field, ": ", status.message()));
}

// The store's bytes are server data, not request data: a value the reader calls malformed
// (INVALID_ARGUMENT) was corrupted or written by something else, which the client cannot fix by changing
// its request. Every other code of the reader already says what happened (DATA_LOSS, RESOURCE_EXHAUSTED,
// FAILED_PRECONDITION for another model, UNIMPLEMENTED for per-head lengths).
absl::Status DecodeError(const absl::Status& status, absl::string_view field, absl::string_view id) {
  if (absl::IsInvalidArgument(status)) {
    return absl::DataLossError(
        absl::StrCat(field, ": the stored value of cache ", id, " is not a valid .kvc: ", status.message()));
  }
  return InField(status, field);
}

// metadata "prefix_tokens": absent in values written before it existed (then nothing is protected);
// otherwise a count of leading entries, which cannot exceed what every layer holds.
absl::StatusOr<int64_t> PrefixTokens(const KvcHeader& header, const KvCache& cache, absl::string_view field) {
  const nlohmann::json& meta = header.metadata;
  auto it = meta.find("prefix_tokens");
  if (it == meta.end()) return 0;
  if (!it->is_number_unsigned()) {
    return absl::DataLossError(
        absl::StrCat(field, ": stored metadata prefix_tokens is ", it->dump(), ", not a non-negative integer"));
  }
  const uint64_t prefix = it->get<uint64_t>();
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    if (prefix > static_cast<uint64_t>(cache.length(l))) {
      return absl::DataLossError(absl::StrCat(field, ": stored metadata prefix_tokens is ", prefix,
                                              " but layer ", l, " holds only ", cache.length(l), " entries"));
    }
  }
  return static_cast<int64_t>(prefix);
}

absl::Status CheckShape(const KvCache& cache, const ModelConfig& config, absl::string_view field) {
  const KvCacheShape& s = cache.shape();
  if (s.num_layers != config.num_layers || s.kv_heads != config.num_kv_heads || s.head_dim != config.head_dim) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ": the cache is shaped [layers ", s.num_layers, ", kv_heads ", s.kv_heads, ", head_dim ",
        s.head_dim, "] but the loaded model has [", config.num_layers, ", ", config.num_kv_heads, ", ",
        config.head_dim, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadedCache> LoadCache(CacheStore& store, const ModelRuntime& runtime, absl::string_view id,
                                      absl::string_view field) {
  if (absl::Status valid = ValidateCacheId(id); !valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", id, "' is not a cache id (64 lowercase hexadecimal characters)"));
  }
  const std::string key(id);
  const absl::Time fetch_start = absl::Now();
  absl::StatusOr<std::unique_ptr<CacheValue>> value = store.GetValue(key);
  const double fetch_seconds = absl::ToDoubleSeconds(absl::Now() - fetch_start);
  if (!value.ok()) {
    if (absl::IsNotFound(value.status())) {
      return absl::NotFoundError(absl::StrCat(field, ": no cache ", id, " is stored"));
    }
    return InField(value.status(), field);
  }
  const absl::string_view bytes = (*value)->bytes();

  const LlamaModel& model = runtime.model();
  KvcDecodeOptions options;
  options.expected_fingerprint = runtime.fingerprint();
  options.device = model.device();
  options.dtype = model.dtype();
  absl::StatusOr<DecodedKvCache> decoded = DecodeKvCache(bytes, options);
  if (!decoded.ok()) return DecodeError(decoded.status(), field, id);

  KVC_RETURN_IF_ERROR(CheckShape(decoded->cache, model.config(), field));
  KVC_ASSIGN_OR_RETURN(const int64_t prefix, PrefixTokens(decoded->header, decoded->cache, field));
  // The decoded tensors are copies on the model's device; the stored value (possibly a file map) can go.
  return LoadedCache{key, std::move(decoded->header), prefix, static_cast<int64_t>(bytes.size()), fetch_seconds,
                     std::move(decoded->cache)};
}

absl::StatusOr<KvCache> ComposeLoaded(std::vector<LoadedCache> caches, const ModelRuntime& runtime) {
  if (caches.empty()) return absl::InvalidArgumentError("cache_ids: empty; at least one cache is required");
  if (caches.size() == 1) return std::move(caches[0].cache);
  std::vector<ComposePart> parts;
  parts.reserve(caches.size());
  for (size_t i = 0; i < caches.size(); ++i) {
    // The first cache's prefix is the composed context's own; later ones repeat it, so they lose theirs.
    parts.push_back(ComposePart{&caches[i].cache, i == 0 ? 0 : caches[i].prefix_tokens});
  }
  return ComposeCaches(parts, runtime.model().rope());
}

}  // namespace kvc
