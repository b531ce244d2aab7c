#include "client/cpp/retry_policy.h"

#include <algorithm>
#include <cmath>

namespace kvc {

absl::Status ValidateRetryPolicy(const RetryPolicy& policy) {
  if (policy.max_attempts < 1) {
    return absl::InvalidArgumentError("retry.max_attempts: must be >= 1");
  }
  if (policy.initial_backoff < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("retry.initial_backoff: must not be negative");
  }
  if (policy.max_backoff < policy.initial_backoff) {
    return absl::InvalidArgumentError("retry.max_backoff: must be >= retry.initial_backoff");
  }
  if (!(policy.multiplier >= 1.0) || !std::isfinite(policy.multiplier)) {
    return absl::InvalidArgumentError("retry.multiplier: must be a finite number >= 1");
  }
  if (!(policy.jitter >= 0.0 && policy.jitter <= 1.0)) {
    return absl::InvalidArgumentError("retry.jitter: must be in [0, 1]");
  }
  return absl::OkStatus();
}

bool IsRetryableCode(absl::StatusCode code) { return code == absl::StatusCode::kUnavailable; }

absl::Duration RetryBackoff(const RetryPolicy& policy, int retry, double uniform01) {
  const double initial = absl::ToDoubleSeconds(policy.initial_backoff);
  const double cap = absl::ToDoubleSeconds(policy.max_backoff);
  // pow overflows to inf for large `retry`; min() brings it back to the cap.
  const double base = std::min(cap, initial * std::pow(policy.multiplier, std::max(0, retry - 1)));
  const double scale = 1.0 + policy.jitter * (2.0 * std::clamp(uniform01, 0.0, 1.0) - 1.0);
  return absl::Seconds(std::max(0.0, base * scale));
}

}  // namespace kvc
