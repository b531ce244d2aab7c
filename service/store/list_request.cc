#include "service/store/list_request.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/store/cache_store.h"

namespace kvc::store_internal {
namespace {

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

}  // namespace

absl::StatusOr<ListRequest> ParseListRequest(const std::string& prefix, int page_size,
                                             const std::string& page_token) {
  if (prefix.size() > 64 || !std::all_of(prefix.begin(), prefix.end(), IsLowerHex)) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefix must be at most 64 lowercase hex characters, got \"",
                     absl::CEscape(prefix.substr(0, 80)), "\""));
  }
  if (page_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("page_size must not be negative, got ", page_size));
  }
  if (!page_token.empty() && !ValidateCacheId(page_token).ok()) {
    return absl::InvalidArgumentError("page_token is not one that List returned");
  }
  ListRequest request;
  request.prefix = prefix;
  request.page_size =
      page_size == 0 ? CacheStore::kDefaultPageSize : std::min(page_size, CacheStore::kMaxPageSize);
  request.after = page_token;
  return request;
}

bool ListMatches(const ListRequest& request, absl::string_view id) {
  return absl::StartsWith(id, request.prefix) && id > absl::string_view(request.after);
}

}  // namespace kvc::store_internal
