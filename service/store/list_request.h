// The checked form of a CacheStore::List call, shared by the backends so that they page identically.
//
// The page token is the last id of the previous page: every backend lists in id order, so "ids after the
// token" resumes exactly where the previous page ended, with no server-side cursor to keep or expire.
#ifndef KVC_SERVICE_STORE_LIST_REQUEST_H_
#define KVC_SERVICE_STORE_LIST_REQUEST_H_

#include <string>

#include "service/store/cache_store.h"

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvc::store_internal {

struct ListRequest {
  std::string prefix;  // validated: 0 to 64 lowercase hex characters
  int page_size = 0;   // 1 to CacheStore::kMaxPageSize
  std::string after;   // list ids strictly greater than this; empty = from the start
};

// INVALID_ARGUMENT naming "prefix", "page_size" or "page_token" when one is malformed.
absl::StatusOr<ListRequest> ParseListRequest(const std::string& prefix, int page_size,
                                             const std::string& page_token);

// True if `id` belongs on a page of `request` (ignoring the page size).
bool ListMatches(const ListRequest& request, absl::string_view id);

// One page of `request` from `entries`, a std::map keyed by id (so already in id order); `info(it)` turns
// an entry into its CacheEntryInfo. The caller holds whatever lock guards `entries`.
template <typename Map, typename ToInfo>
ListPage PageOf(const ListRequest& request, const Map& entries, ToInfo info) {
  ListPage page;
  // Ids sort as strings, so the matching range starts at the larger of the prefix and the token.
  auto it = request.after.empty() || request.after < request.prefix ? entries.lower_bound(request.prefix)
                                                                    : entries.upper_bound(request.after);
  for (; it != entries.end() && ListMatches(request, it->first); ++it) {
    if (static_cast<int>(page.entries.size()) == request.page_size) {
      page.next_page_token = page.entries.back().id;
      break;
    }
    page.entries.push_back(info(it));
  }
  return page;
}

}  // namespace kvc::store_internal

#endif  // KVC_SERVICE_STORE_LIST_REQUEST_H_
