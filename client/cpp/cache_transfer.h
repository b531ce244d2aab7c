// The client's half of the CacheService streams (proto/kvc/v1/cache.proto): splitting a value into a Put
// stream, and assembling and verifying a Get stream.
//
// Thread safety: CacheAssembler is used by one thread; the functions are pure.
#ifndef KVC_CLIENT_CPP_CACHE_TRANSFER_H_
#define KVC_CLIENT_CPP_CACHE_TRANSFER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/kvc/v1/cache.pb.h"

namespace kvc {

// A stored value fetched with CacheService.Get and checked against its header.
struct FetchedCache {
  // The stream's header: id, total_bytes, sha256 and the server's description of the value (info).
  kvc::v1::CacheHeader header;
  // The .kvc value, header.total_bytes long, whose SHA-256 is header.sha256.
  std::string bytes;
};

// The first message of a Put of `value` under `cache_id`: its length and its SHA-256 (32 raw bytes).
kvc::v1::CacheChunk MakePutHeader(const std::string& cache_id, absl::string_view value);

// The data chunks that follow it: consecutive pieces of at most `chunk_bytes` (1 to 1 MiB).
std::vector<absl::string_view> SplitIntoChunks(absl::string_view value, int chunk_bytes);

// Collects the messages of one Get stream.
class CacheAssembler {
 public:
  // `cache_id`: the id that was asked for; the header must name it.
  explicit CacheAssembler(std::string cache_id) : cache_id_(std::move(cache_id)) {}

  // Takes the next message. INTERNAL when the stream breaks the protocol (data before the header, a
  // second header, a header for another id, an empty message, a total_bytes < 1); DATA_LOSS when the
  // data runs past header.total_bytes. After an error the assembler must not be used again.
  absl::Status Add(kvc::v1::CacheChunk& chunk);

  // Whether the header has arrived (a stream that delivered it is never retried).
  bool has_header() const { return has_header_; }

  // The value, once the stream has ended with OK. INTERNAL when there was no header; DATA_LOSS when the
  // bytes are fewer than header.total_bytes or their SHA-256 differs from header.sha256.
  absl::StatusOr<FetchedCache> Finish() &&;

 private:
  const std::string cache_id_;
  bool has_header_ = false;
  FetchedCache result_;
};

}  // namespace kvc

#endif  // KVC_CLIENT_CPP_CACHE_TRANSFER_H_
