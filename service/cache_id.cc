#include "service/cache_id.h"

#include <limits>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "compressor/format/kvc_header.h"
#include "compressor/util/sha256.h"
#include "service/store/cache_store.h"

namespace kvc {
namespace {

template <typename T>
void Put(Sha256& h, T v) {
  h.Update(&v, sizeof v);  // little-endian, as every host we build for
}

absl::Status PutIds(Sha256& h, const std::vector<int64_t>& ids, const char* field) {
  Put<uint64_t>(h, ids.size());
  for (int64_t id : ids) {
    if (id < std::numeric_limits<int32_t>::min() || id > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": token id ", id, " does not fit in 32 bits"));
    }
    Put<int32_t>(h, static_cast<int32_t>(id));
  }
  return absl::OkStatus();
}

}  // namespace

std::string CanonicalSpecJson(const CacheIdInput& in) {
  nlohmann::json spec = {{"method", in.method},
                         {"options", nlohmann::json(in.options)},
                         {"dtype", KvcDtypeName(in.dtype)},
                         {"compute_dtype", in.compute_dtype},
                         {"codec", KvcCodecName(in.codec)}};
  if (in.weights != "float") spec["weights"] = in.weights;
  if (in.ratio) spec["ratio"] = *in.ratio;
  if (in.target_tokens) spec["target_tokens"] = *in.target_tokens;
  return spec.dump();  // nlohmann objects sort their keys
}

absl::StatusOr<std::string> ComputeCacheId(const CacheIdInput& in) {
  if (ValidateCacheId(in.fingerprint).ok() == false) {
    return absl::InvalidArgumentError("fingerprint: expected 64 lowercase hex characters");
  }
  if (in.ratio && in.target_tokens) return absl::InvalidArgumentError("spec: both ratio and target_tokens");
  if (in.compute_dtype.empty()) return absl::InvalidArgumentError("compute_dtype: empty");
  const bool from_caches = !in.document_cache_ids.empty();
  if (from_caches == !in.context.empty()) {
    return absl::InvalidArgumentError("context: give either token ids or document cache ids");
  }
  Sha256 h;
  h.Update(absl::string_view("kvc-cache-id\0", 13));
  Put<uint16_t>(h, kKvcVersionMajor);
  Put<uint16_t>(h, kKvcVersionMinor);
  h.Update(absl::HexStringToBytes(in.fingerprint));
  const std::string spec = CanonicalSpecJson(in);
  Put<uint32_t>(h, static_cast<uint32_t>(spec.size()));
  h.Update(spec);
  Put<uint8_t>(h, from_caches ? 1 : 0);
  if (from_caches) {
    Put<uint64_t>(h, in.document_cache_ids.size());
    for (const std::string& id : in.document_cache_ids) {
      if (absl::Status s = ValidateCacheId(id); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("document_cache_ids: ", s.message()));
      }
      h.Update(absl::HexStringToBytes(id));
    }
  } else {
    Put<uint64_t>(h, static_cast<uint64_t>(in.protected_prefix));
    if (absl::Status s = PutIds(h, in.context, "context"); !s.ok()) return s;
  }
  if (absl::Status s = PutIds(h, in.query, "query"); !s.ok()) return s;
  return h.FinalHex();
}

}  // namespace kvc
