// The pause protocol: an unarmed point passes, an armed one holds exactly one arrival until it is released,
// and HoldAt lets the earlier arrivals pass.
#include "service/pause_points.h"

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

constexpr char kPoint[] = "test.point";

class PausePointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "kvc-pause-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    auto points = PausePoints::Create(dir_);
    ASSERT_TRUE(points.ok()) << points.status();
    points_ = *std::move(points);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  absl::Time Soon() const { return absl::Now() + absl::Seconds(60); }
  // Until the test has armed kPoint: a worker that must not arrive before the arm waits here.
  void WaitArmed() const {
    while (!std::filesystem::exists(dir_ + "/" + kPoint + ".arm")) absl::SleepFor(absl::Milliseconds(1));
  }

  std::string dir_;
  std::unique_ptr<PausePoints> points_;
};

TEST_F(PausePointsTest, CreateNeedsADirectory) {
  EXPECT_EQ(PausePoints::Create("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PausePoints::Create(dir_ + "/missing").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PausePointsTest, UnarmedPointPassesAndNothingIsHeld) {
  points_->Reach(kPoint);  // returns: nothing is armed
  PauseControl control(dir_);
  EXPECT_FALSE(control.Held(kPoint));
  EXPECT_EQ(control.Release(kPoint).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(control.WaitHeld(kPoint, absl::Now()).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(control.WaitHeld(kPoint, Soon(), [] { return true; }).code(), absl::StatusCode::kCancelled);
}

TEST_F(PausePointsTest, ArmedPointHoldsOneArrivalUntilReleased) {
  PauseControl control(dir_);
  ASSERT_TRUE(control.Arm(kPoint).ok());
  std::atomic<int> passed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      points_->Reach(kPoint);
      ++passed;
    });
  }
  ASSERT_TRUE(control.WaitHeld(kPoint, Soon()).ok());
  // The other three pass on their own; the held one only after the release.
  const absl::Time until = Soon();
  while (passed.load() < 3 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(passed.load(), 3);
  EXPECT_TRUE(control.Held(kPoint));
  ASSERT_TRUE(control.Release(kPoint).ok());
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(passed.load(), 4);
  EXPECT_FALSE(control.Held(kPoint));
  points_->Reach(kPoint);  // the arm was used up
}

TEST_F(PausePointsTest, HoldAtLetsEarlierArrivalsPass) {
  PauseControl control(dir_);
  std::atomic<int> arrivals{0};
  std::thread worker([&] {
    // Starts once the first arm is there: an arrival before it would pass uncounted.
    WaitArmed();
    for (int i = 0; i < 5; ++i) {
      points_->Reach(kPoint);
      ++arrivals;
    }
  });
  ASSERT_TRUE(control.HoldAt(kPoint, 3, Soon()).ok());
  // Held at the third arrival: two went through, the third has not.
  EXPECT_EQ(arrivals.load(), 2);
  ASSERT_TRUE(control.Release(kPoint).ok());
  worker.join();
  EXPECT_EQ(arrivals.load(), 5);
}

TEST_F(PausePointsTest, HeldArrivalSaysWhenItsCallHasStopped) {
  PauseControl control(dir_);
  EXPECT_EQ(control.WaitStopSeen(kPoint, Soon()).code(), absl::StatusCode::kFailedPrecondition);
  std::atomic<bool> stopped{false};
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    stopped = false;
    ASSERT_TRUE(control.Arm(kPoint).ok());
    std::thread worker([&] { points_->Reach(kPoint, [&] { return stopped.load(); }); });
    ASSERT_TRUE(control.WaitHeld(kPoint, Soon()).ok());
    // Not stopped yet (the first round's file went with its release).
    EXPECT_EQ(control.WaitStopSeen(kPoint, absl::Now() + absl::Milliseconds(30)).code(),
              absl::StatusCode::kDeadlineExceeded);
    stopped = true;
    EXPECT_TRUE(control.WaitStopSeen(kPoint, Soon()).ok());
    EXPECT_TRUE(control.Held(kPoint));
    ASSERT_TRUE(control.Release(kPoint).ok());
    worker.join();
  }
}

TEST_F(PausePointsTest, CountArrivalsHoldsEachOneUntilDone) {
  PauseControl control(dir_);
  std::atomic<bool> finished{false};
  std::thread worker([&] {
    WaitArmed();  // no arrival passes before the count begins
    for (int i = 0; i < 3; ++i) points_->Reach(kPoint);
    finished = true;
  });
  EXPECT_EQ(control.CountArrivals(kPoint, Soon(), [&] { return finished.load(); }), 3);
  worker.join();
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/" + kPoint + ".arm"));
}

TEST_F(PausePointsTest, DisarmWithdrawsAnUnusedArm) {
  PauseControl control(dir_);
  ASSERT_TRUE(control.Arm(kPoint).ok());
  control.Disarm(kPoint);
  points_->Reach(kPoint);
  EXPECT_FALSE(control.Held(kPoint));
}

}  // namespace
}  // namespace kvc
