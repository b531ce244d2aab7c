#include "service/store/cache_store.h"

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/store/file_store.h"
#include "service/store/memory_store.h"
#include "service/store/redis_store.h"

namespace kvc {

namespace {

class OwnedValue : public CacheValue {
 public:
  explicit OwnedValue(std::string bytes) : bytes_(std::move(bytes)) {}
  absl::string_view bytes() const override { return bytes_; }

 private:
  std::string bytes_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CacheValue>> CacheStore::GetValue(const std::string& id) {
  absl::StatusOr<std::string> bytes = Get(id);
  if (!bytes.ok()) return bytes.status();
  return std::make_unique<OwnedValue>(std::move(*bytes));
}

absl::Status ValidateCacheId(absl::string_view id) {
  bool ok = id.size() == 64;
  for (char c : id) {
    if (!ok) break;
    ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  }
  if (ok) return absl::OkStatus();
  // Ids come from clients: quote a bounded, escaped excerpt so a hostile id cannot flood or forge logs.
  std::string shown = absl::CEscape(id.substr(0, 80));
  if (id.size() > 80) shown.append("...");
  return absl::InvalidArgumentError(absl::StrCat("cache_id must be 64 lowercase hex characters, got \"",
                                                 shown, "\" (", id.size(), " bytes)"));
}

std::string StoreUriForDisplay(const std::string& uri) {
  if (!absl::StartsWith(uri, "redis://")) return uri;
  const size_t at = uri.rfind('@');
  const size_t colon = uri.find(':', 8);  // after "redis://": the user's end, where a password starts
  if (at == std::string::npos || colon == std::string::npos || colon > at) return uri;
  return absl::StrCat(uri.substr(0, colon + 1), "***", uri.substr(at));
}

absl::StatusOr<std::unique_ptr<CacheStore>> OpenCacheStore(const std::string& uri,
                                                           const StoreOptions& options) {
  if (uri.empty()) return absl::InvalidArgumentError("cache store URI is empty");
  if (absl::StartsWith(uri, "memory://")) {
    if (uri != "memory://") {
      return absl::InvalidArgumentError(
          absl::StrCat("cache store URI \"", uri, "\": memory:// takes no path"));
    }
    return std::unique_ptr<CacheStore>(MemoryStore::Create());
  }
  if (absl::StartsWith(uri, "redis://")) {
    auto store = RedisStore::Open(uri, options);
    if (!store.ok()) return store.status();
    return std::unique_ptr<CacheStore>(std::move(*store));
  }
  std::string path = uri;
  if (absl::StartsWith(uri, "file://")) {
    // file:///abs/path keeps its leading slash; file://./rel and file://rel are relative to the cwd.
    path = uri.substr(7);
    if (path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cache store URI \"", uri, "\": file:// needs a directory"));
    }
  } else if (size_t pos = uri.find("://"); pos != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache store URI \"", uri, "\": unknown scheme \"", uri.substr(0, pos),
                     "\"; use file:///path, redis://host:port/db or memory://"));
  }
  auto store = FileStore::Open(path, options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<CacheStore>(std::move(*store));
}

}  // namespace kvc
