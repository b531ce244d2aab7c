// The scheduler's gauges follow its queue: a held job runs, another waits with its tokens.
#include "service/scheduler_metrics.h"

#include <map>
#include <string>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

std::map<std::string, double> Values(const SchedulerCollector& c) {
  std::map<std::string, double> out;
  for (const prometheus::MetricFamily& f : c.Collect()) {
    EXPECT_EQ(f.type, prometheus::MetricType::Gauge) << f.name;
    EXPECT_EQ(f.metric.size(), 1u) << f.name;
    out[f.name] = f.metric.front().gauge.value;
  }
  return out;
}

TEST(SchedulerCollectorTest, GaugesFollowTheQueue) {
  auto s = Scheduler::Create({.name = "test", .workers = 1, .max_queue_tokens = 1000});
  ASSERT_TRUE(s.ok()) << s.status();
  SchedulerCollector collector(s->get(), 1000);
  EXPECT_EQ(Values(collector), (std::map<std::string, double>{{"kvc_queue_capacity_tokens", 1000},
                                                               {"kvc_queued_jobs", 0},
                                                               {"kvc_queued_tokens", 0},
                                                               {"kvc_running_jobs", 0}}));
  absl::Notification started, release;
  ASSERT_TRUE((*s)->Submit({.cost_tokens = 300, .run = [&](const JobStart&) {
                             started.Notify();
                             release.WaitForNotification();
                           }})
                  .ok());
  started.WaitForNotification();
  ASSERT_TRUE((*s)->Submit({.cost_tokens = 70, .run = [](const JobStart&) {}}).ok());
  std::map<std::string, double> busy = Values(collector);
  EXPECT_EQ(busy["kvc_queued_tokens"], 70);  // the running job no longer counts
  EXPECT_EQ(busy["kvc_queued_jobs"], 1);
  EXPECT_EQ(busy["kvc_running_jobs"], 1);
  release.Notify();
  ASSERT_TRUE((*s)->Drain(absl::Seconds(30)));
  EXPECT_EQ(Values(collector)["kvc_queued_tokens"], 0);
}

}  // namespace
}  // namespace kvc
