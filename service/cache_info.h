// CacheInfo (proto/kvc/v1/common.proto) from a .kvc header: the one translation from the format's header
// to the wire description of a stored cache, shared by the cache role (Get, Put, Stat) and the compress
// role.
//
// The header's metadata JSON supplies the model name ("model"), the spec ("spec": method, ratio or
// target_tokens, options) and, when a writer records it, "prefix_tokens". Metadata keys that are absent or
// of an unexpected type leave their fields unset rather than failing: the reader has already validated
// the header, and a description with a field missing is more useful than none.
//
// Thread safety: pure functions.
#ifndef KVC_SERVICE_CACHE_INFO_H_
#define KVC_SERVICE_CACHE_INFO_H_

#include <cstdint>

#include <nlohmann/json.hpp>

#include "absl/strings/string_view.h"
#include "compressor/format/kvc_header.h"
#include "proto/kvc/v1/common.pb.h"

namespace kvc {

// `cache_id` and `value_bytes` (the size of the whole .kvc value) are not in the header. Timings stay
// unset.
kvc::v1::CacheInfo CacheInfoFromHeader(const KvcHeader& header, absl::string_view cache_id,
                                       int64_t value_bytes);

// The metadata "spec" object as a message. Option values that are not JSON strings are written as their
// JSON text (4 → "4", true → "true"), matching the wire's map<string, string>.
kvc::v1::CompressionSpec CompressionSpecFromJson(const nlohmann::json& spec);

kvc::v1::CacheDtype ToProtoDtype(KvcDtype dtype);
kvc::v1::CacheCodec ToProtoCodec(KvcCodec codec);

}  // namespace kvc

#endif  // KVC_SERVICE_CACHE_INFO_H_
