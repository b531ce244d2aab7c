#include "client/cpp/retry_policy.h"

#include <gtest/gtest.h>

namespace kvc {
namespace {

TEST(RetryPolicyTest, OnlyUnavailableIsRetried) {
  EXPECT_TRUE(IsRetryableCode(absl::StatusCode::kUnavailable));
  for (absl::StatusCode code :
       {absl::StatusCode::kOk, absl::StatusCode::kCancelled, absl::StatusCode::kUnknown,
        absl::StatusCode::kInvalidArgument, absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kNotFound,
        absl::StatusCode::kAlreadyExists, absl::StatusCode::kPermissionDenied,
        absl::StatusCode::kResourceExhausted, absl::StatusCode::kFailedPrecondition, absl::StatusCode::kAborted,
        absl::StatusCode::kOutOfRange, absl::StatusCode::kUnimplemented, absl::StatusCode::kInternal,
        absl::StatusCode::kDataLoss, absl::StatusCode::kUnauthenticated}) {
    EXPECT_FALSE(IsRetryableCode(code)) << absl::StatusCodeToString(code);
  }
}

TEST(RetryPolicyTest, BackoffGrowsExponentiallyUpToTheCap) {
  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(100);
  p.max_backoff = absl::Milliseconds(700);
  p.multiplier = 2.0;
  p.jitter = 0.0;
  EXPECT_EQ(RetryBackoff(p, 1, 0.3), absl::Milliseconds(100));
  EXPECT_EQ(RetryBackoff(p, 2, 0.3), absl::Milliseconds(200));
  EXPECT_EQ(RetryBackoff(p, 3, 0.3), absl::Milliseconds(400));
  EXPECT_EQ(RetryBackoff(p, 4, 0.3), absl::Milliseconds(700));
  EXPECT_EQ(RetryBackoff(p, 1000, 0.3), absl::Milliseconds(700));  // no overflow
}

TEST(RetryPolicyTest, JitterScalesWithinItsBand) {
  RetryPolicy p;
  p.initial_backoff = absl::Seconds(1);
  p.max_backoff = absl::Seconds(10);
  p.jitter = 0.25;
  EXPECT_EQ(RetryBackoff(p, 1, 0.0), absl::Milliseconds(750));
  EXPECT_EQ(RetryBackoff(p, 1, 0.5), absl::Seconds(1));
  EXPECT_EQ(RetryBackoff(p, 1, 1.0), absl::Milliseconds(1250));
  // Draws from [0, 1) stay within [1 - jitter, 1 + jitter).
  for (double u = 0; u < 1.0; u += 0.01) {
    const absl::Duration d = RetryBackoff(p, 2, u);
    EXPECT_GE(d, absl::Milliseconds(1500));
    EXPECT_LE(d, absl::Milliseconds(2500));
  }
}

TEST(RetryPolicyTest, ValidationNamesTheField) {
  RetryPolicy p;
  EXPECT_TRUE(ValidateRetryPolicy(p).ok());
  p.max_attempts = 0;
  EXPECT_EQ(ValidateRetryPolicy(p).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ValidateRetryPolicy(p).message().find("retry.max_attempts"), absl::string_view::npos);
  p = RetryPolicy();
  p.max_backoff = absl::Milliseconds(1);
  EXPECT_NE(ValidateRetryPolicy(p).message().find("retry.max_backoff"), absl::string_view::npos);
  p = RetryPolicy();
  p.multiplier = 0.5;
  EXPECT_NE(ValidateRetryPolicy(p).message().find("retry.multiplier"), absl::string_view::npos);
  p = RetryPolicy();
  p.jitter = 1.5;
  EXPECT_NE(ValidateRetryPolicy(p).message().find("retry.jitter"), absl::string_view::npos);
}

}  // namespace
}  // namespace kvc
