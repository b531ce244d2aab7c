// The arithmetic of RetryPolicy (client_options.h): which codes are retried and how long to wait.
//
// Thread safety: pure functions.
#ifndef KVC_CLIENT_CPP_RETRY_POLICY_H_
#define KVC_CLIENT_CPP_RETRY_POLICY_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/cpp/client_options.h"

namespace kvc {

// INVALID_ARGUMENT naming the field when a value is out of range (see RetryPolicy).
absl::Status ValidateRetryPolicy(const RetryPolicy& policy);

// Only UNAVAILABLE: the one code that says the call did nothing and may succeed later. DEADLINE_EXCEEDED
// is not retried because the deadline covers every attempt; RESOURCE_EXHAUSTED (a full queue) is left to
// the caller, who knows whether waiting is worth it.
bool IsRetryableCode(absl::StatusCode code);

// The wait before retry number `retry` (1 for the first retry): initial_backoff * multiplier^(retry-1),
// capped at max_backoff, then scaled by 1 + jitter * (2 * uniform01 - 1). `uniform01` is a uniform draw
// in [0, 1).
absl::Duration RetryBackoff(const RetryPolicy& policy, int retry, double uniform01);

}  // namespace kvc

#endif  // KVC_CLIENT_CPP_RETRY_POLICY_H_
