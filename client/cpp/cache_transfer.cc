#include "client/cpp/cache_transfer.h"

#include <algorithm>
#include <array>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "compressor/util/sha256.h"

namespace kvc {
namespace {

constexpr int kMaxChunkBytes = 1 << 20;
// A header may announce anything; memory is reserved only up to this, and grows as data really arrives.
constexpr int64_t kMaxReserveBytes = int64_t{256} << 20;

std::string Sha256Raw(absl::string_view bytes) {
  Sha256 hash;
  hash.Update(bytes);
  const std::array<uint8_t, 32> digest = hash.Final();
  return std::string(reinterpret_cast<const char*>(digest.data()), digest.size());
}

}  // namespace

kvc::v1::CacheChunk MakePutHeader(const std::string& cache_id, absl::string_view value) {
  kvc::v1::CacheChunk chunk;
  kvc::v1::CacheHeader* header = chunk.mutable_header();
  header->set_cache_id(cache_id);
  header->set_total_bytes(static_cast<int64_t>(value.size()));
  header->set_sha256(Sha256Raw(value));
  return chunk;
}

std::vector<absl::string_view> SplitIntoChunks(absl::string_view value, int chunk_bytes) {
  const size_t step = static_cast<size_t>(std::clamp(chunk_bytes, 1, kMaxChunkBytes));
  std::vector<absl::string_view> chunks;
  chunks.reserve((value.size() + step - 1) / step);
  for (size_t offset = 0; offset < value.size(); offset += step) chunks.push_back(value.substr(offset, step));
  return chunks;
}

absl::Status CacheAssembler::Add(kvc::v1::CacheChunk& chunk) {
  switch (chunk.chunk_case()) {
    case kvc::v1::CacheChunk::kHeader: {
      if (has_header_) return absl::InternalError("CacheService.Get: the server sent a second header");
      const kvc::v1::CacheHeader& header = chunk.header();
      if (header.cache_id() != cache_id_) {
        return absl::InternalError(absl::StrCat("CacheService.Get: asked for ", cache_id_,
                                                ", the header is for ", header.cache_id()));
      }
      if (header.total_bytes() < 1) {
        return absl::InternalError(
            absl::StrCat("CacheService.Get: header.total_bytes is ", header.total_bytes()));
      }
      has_header_ = true;
      result_.header = std::move(*chunk.mutable_header());
      result_.bytes.reserve(static_cast<size_t>(std::min(result_.header.total_bytes(), kMaxReserveBytes)));
      return absl::OkStatus();
    }
    case kvc::v1::CacheChunk::kData: {
      if (!has_header_) return absl::InternalError("CacheService.Get: the server sent data before the header");
      if (chunk.data().empty()) return absl::InternalError("CacheService.Get: the server sent an empty chunk");
      const int64_t total = result_.header.total_bytes();
      if (static_cast<int64_t>(result_.bytes.size() + chunk.data().size()) > total) {
        return absl::DataLossError(absl::StrCat("cache ", cache_id_, ": the server sent more than the ", total,
                                                " bytes its header announced"));
      }
      result_.bytes.append(chunk.data());
      return absl::OkStatus();
    }
    case kvc::v1::CacheChunk::CHUNK_NOT_SET:
      break;
  }
  return absl::InternalError("CacheService.Get: the server sent a message with neither header nor data");
}

absl::StatusOr<FetchedCache> CacheAssembler::Finish() && {
  if (!has_header_) return absl::InternalError("CacheService.Get: the stream ended without a header");
  const int64_t total = result_.header.total_bytes();
  if (static_cast<int64_t>(result_.bytes.size()) != total) {
    return absl::DataLossError(absl::StrCat("cache ", cache_id_, ": received ", result_.bytes.size(),
                                            " bytes, the header announced ", total));
  }
  const std::string digest = Sha256Raw(result_.bytes);
  if (digest != result_.header.sha256()) {
    return absl::DataLossError(absl::StrCat("cache ", cache_id_, ": SHA-256 of the received bytes is ",
                                            absl::BytesToHexString(digest), ", the header says ",
                                            absl::BytesToHexString(result_.header.sha256())));
  }
  return std::move(result_);
}

}  // namespace kvc
