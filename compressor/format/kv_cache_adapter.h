// The one place where a torch KvCache meets the .kvc format: encode a cache into bytes (converting to the
// stored dtype, quantizing int8) and decode bytes into a cache on a device.
//
// int8: keys are quantized with one symmetric scale per (head, channel) over the kept tokens, because key
// outliers sit in fixed channels; values with one scale per (head, token). x ≈ q * scale, q in [-127, 127].
//
// Thread safety: pure functions; concurrent calls on distinct caches are fine.
#ifndef KVC_COMPRESSOR_FORMAT_KV_CACHE_ADAPTER_H_
#define KVC_COMPRESSOR_FORMAT_KV_CACHE_ADAPTER_H_

#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compressor/format/kvc_header.h"
#include "compressor/format/kvc_reader.h"
#include "compressor/kv/kv_cache.h"
#include "compressor/model/model_config.h"

namespace kvc {

struct KvcEncodeOptions {
  KvcDtype dtype = KvcDtype::kF32;
  KvcCodec codec = KvcCodec::kNone;
  int zstd_level = 3;
};

// What the header records beyond the cache itself.
struct KvcProvenance {
  std::string model_name;
  nlohmann::json rope = nlohmann::json::object();  // RopeMetadata(config)
  nlohmann::json spec = nlohmann::json::object();  // the compression spec, canonical
  uint64_t tokens_in = 0;                          // context tokens before compression
  uint64_t prefix_tokens = 0;                      // leading entries that are the protected prefix
};

// The rope settings a reader needs to re-rotate keys, as JSON ({"type", "theta", "factor", ...}).
nlohmann::json RopeMetadata(const ModelConfig& config);

// INVALID_ARGUMENT when the cache has no model fingerprint; the cache may live on any device.
absl::StatusOr<std::string> EncodeKvCache(const KvCache& cache, const KvcProvenance& provenance,
                                          const KvcEncodeOptions& options = {});

struct KvcDecodeOptions {
  // When set, a cache from another model is refused with FAILED_PRECONDITION.
  std::optional<std::string> expected_fingerprint;
  torch::Device device = torch::kCPU;
  // Dtype of the decoded tensors; default float32 for f32 and int8 files, the stored type otherwise.
  std::optional<torch::ScalarType> dtype;
  KvcReadOptions read;
};

struct DecodedKvCache {
  KvCache cache;
  KvcHeader header;
};

// Errors of KvcReader::Open, FAILED_PRECONDITION for a fingerprint mismatch. A file whose heads keep
// different numbers of entries decodes into a ragged KvCache (padding masked, see kv_cache.h).
absl::StatusOr<DecodedKvCache> DecodeKvCache(absl::string_view bytes, const KvcDecodeOptions& options = {});

}  // namespace kvc

#endif  // KVC_COMPRESSOR_FORMAT_KV_CACHE_ADAPTER_H_
