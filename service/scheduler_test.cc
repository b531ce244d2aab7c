// The device scheduler: order, admission by queued tokens, deadlines and cancellation while queued, and
// draining.
#include "service/scheduler.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

std::unique_ptr<Scheduler> Make(int workers, int64_t max_tokens) {
  auto s = Scheduler::Create({"test", workers, max_tokens});
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(*s);
}

TEST(SchedulerTest, RunsJobsInArrivalOrderOffTheCallingThread) {
  auto s = Make(1, 1000);
  absl::Mutex mu;
  std::vector<int> order;
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(s->Submit({.cost_tokens = 10, .run = [&, i](const JobStart& st) {
                            EXPECT_TRUE(st.status.ok());
                            on_caller = on_caller || std::this_thread::get_id() == caller;
                            absl::MutexLock lock(&mu);
                            order.push_back(i);
                          }})
                    .ok());
  }
  ASSERT_TRUE(s->Drain(absl::Seconds(10)));
  EXPECT_FALSE(on_caller);
  ASSERT_EQ(order.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(order[i], i);
}

TEST(SchedulerTest, AdmitsByQueuedTokens) {
  auto s = Make(1, 100);
  absl::Notification release, started;
  // The running job does not count against the queue.
  ASSERT_TRUE(s->Submit({.cost_tokens = 100, .run = [&](const JobStart&) {
                          started.Notify();
                          release.WaitForNotification();
                        }})
                  .ok());
  started.WaitForNotification();
  std::atomic<int> ran{0};
  auto job = [&](int64_t cost) { return Job{.cost_tokens = cost, .run = [&](const JobStart&) { ++ran; }}; };
  EXPECT_TRUE(s->Submit(job(60)).ok());
  EXPECT_TRUE(s->Submit(job(40)).ok());
  absl::Status full = s->Submit(job(1));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_NE(full.message().find("100"), std::string::npos) << full;
  EXPECT_EQ(s->stats().queued_tokens, 100);
  EXPECT_EQ(s->stats().queued_jobs, 2);
  EXPECT_EQ(s->stats().running_jobs, 1);
  // A request larger than the whole queue can never run: say so instead of "full".
  EXPECT_EQ(s->Submit(job(101)).code(), absl::StatusCode::kInvalidArgument);
  release.Notify();
  ASSERT_TRUE(s->Drain(absl::Seconds(10)));
  EXPECT_EQ(ran, 2);
}

TEST(SchedulerTest, ExpiredAndCancelledJobsAreNotStartedButAreFinished) {
  auto s = Make(1, 1000);
  absl::Notification release, started;
  ASSERT_TRUE(s->Submit({.run = [&](const JobStart&) {
                          started.Notify();
                          release.WaitForNotification();
                        }})
                  .ok());
  started.WaitForNotification();
  std::atomic<bool> cancel{false};
  absl::Status expired_status, cancelled_status;
  absl::Duration queued;
  ASSERT_TRUE(s->Submit({.deadline = absl::Now() + absl::Milliseconds(20),
                         .run = [&](const JobStart& st) { expired_status = st.status; queued = st.queued; }})
                  .ok());
  ASSERT_TRUE(s->Submit({.cancelled = [&] { return cancel.load(); },
                         .run = [&](const JobStart& st) { cancelled_status = st.status; }})
                  .ok());
  absl::SleepFor(absl::Milliseconds(50));
  cancel = true;
  release.Notify();
  ASSERT_TRUE(s->Drain(absl::Seconds(10)));
  EXPECT_EQ(expired_status.code(), absl::StatusCode::kDeadlineExceeded) << expired_status;
  EXPECT_EQ(cancelled_status.code(), absl::StatusCode::kCancelled) << cancelled_status;
  EXPECT_GE(queued, absl::Milliseconds(40));
}

TEST(SchedulerTest, DrainRefusesNewWorkAndWaitsForRunningJobs) {
  auto s = Make(2, 1000);
  std::atomic<int> done{0};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(s->Submit({.run = [&](const JobStart&) {
                            absl::SleepFor(absl::Milliseconds(30));
                            ++done;
                          }})
                    .ok());
  }
  EXPECT_TRUE(s->Drain(absl::Seconds(10)));
  EXPECT_EQ(done, 4);
  EXPECT_EQ(s->Submit({.run = [](const JobStart&) {}}).code(), absl::StatusCode::kUnavailable);
}

TEST(SchedulerTest, DrainTimesOutOnAStuckJob) {
  auto s = Make(1, 1000);
  absl::Notification release;
  ASSERT_TRUE(s->Submit({.run = [&](const JobStart&) { release.WaitForNotification(); }}).ok());
  EXPECT_FALSE(s->Drain(absl::Milliseconds(50)));
  release.Notify();
}

TEST(SchedulerTest, RejectsBadOptionsAndJobs) {
  EXPECT_EQ(Scheduler::Create({"x", 0, 10}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Scheduler::Create({"x", 1, 0}).status().code(), absl::StatusCode::kInvalidArgument);
  auto s = Make(1, 10);
  EXPECT_EQ(s->Submit(Job{}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s->Submit({.cost_tokens = -1, .run = [](const JobStart&) {}}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvc
