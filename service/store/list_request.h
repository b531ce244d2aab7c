// The checked form of a CacheStore::List call, shared by the backends so that they page identically.
//
// The page token is the last id of the previous page: every backend lists in id order, so "ids after the
// token" resumes exactly where the previous page ended, with no server-side cursor to keep or expire.
#ifndef KVC_SERVICE_STORE_LIST_REQUEST_H_
#define KVC_SERVICE_STORE_LIST_REQUEST_H_

#include <string>

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

}  // namespace kvc::store_internal

#endif  // KVC_SERVICE_STORE_LIST_REQUEST_H_
