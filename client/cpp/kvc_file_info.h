// A CacheInfo (proto/kvc/v1/common.proto) for .kvc bytes the client holds itself: a local file, or a value
// fetched with GetCache. It is read with the format library alone (KvcReader::ReadHeader), so describing a
// cache needs neither LibTorch nor a server.
//
// The fields match what the cache role reports for the same bytes (CacheService.Stat with include_info):
// the model name, spec and prefix_tokens come from the header's metadata JSON, and keys that are absent or
// of an unexpected type leave their fields unset.
//
// Thread safety: pure functions.
#ifndef KVC_CLIENT_CPP_KVC_FILE_INFO_H_
#define KVC_CLIENT_CPP_KVC_FILE_INFO_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/kvc/v1/common.pb.h"

namespace kvc {

struct KvcFileInfoOptions {
  // Also check every section's checksum (reads the whole value; zstd sections are decompressed).
  bool verify_sections = false;
};

// `bytes`: the whole .kvc value (bytes is set to its size). `cache_id` is copied into the result as is
// (empty for a file that was never stored). Errors are the reader's: INVALID_ARGUMENT for bytes that are
// not a .kvc v1 value or an inconsistent header, DATA_LOSS for a truncated value or a checksum mismatch.
absl::StatusOr<kvc::v1::CacheInfo> DescribeKvcBytes(absl::string_view bytes, const std::string& cache_id,
                                                     const KvcFileInfoOptions& options = {});

}  // namespace kvc

#endif  // KVC_CLIENT_CPP_KVC_FILE_INFO_H_
