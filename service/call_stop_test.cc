// The stop rule: the deadline wins once it has passed, and also for a cancel that comes within the slack
// before it (the client's own expiry); any other cancel is CANCELLED.
#include "service/call_stop.h"

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

TEST(CallStopTest, GoesOnWhenNeitherCancelledNorPastTheDeadline) {
  EXPECT_TRUE(CallStop(false, absl::Now() + absl::Seconds(60), "x").ok());
  EXPECT_TRUE(CallStop(false, absl::InfiniteFuture(), "x").ok());
}

TEST(CallStopTest, PassedDeadlineIsDeadlineExceededCancelledOrNot) {
  const absl::Time past = absl::Now() - absl::Milliseconds(1);
  for (bool cancelled : {false, true}) {
    absl::Status s = CallStop(cancelled, past, "while queued");
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "while queued")) << s;
  }
}

TEST(CallStopTest, CancelJustBeforeTheDeadlineIsTheClientsExpiry) {
  absl::Status s = CallStop(true, absl::Now() + kDeadlineSlack / 2, "in the prefill");
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
}

TEST(CallStopTest, CancelWellBeforeTheDeadlineIsCancelled) {
  for (absl::Time deadline : {absl::Now() + absl::Seconds(60), absl::InfiniteFuture()}) {
    absl::Status s = CallStop(true, deadline, "in the prefill");
    EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "in the prefill")) << s;
  }
}

}  // namespace
}  // namespace kvc
