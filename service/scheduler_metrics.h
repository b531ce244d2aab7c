// The device scheduler's state as Prometheus gauges, read when /metrics is scraped:
//   kvc_queued_tokens          tokens waiting for the device (what admission counts)
//   kvc_queue_capacity_tokens  --max-queue-tokens, so that saturation is a ratio in PromQL
//   kvc_queued_jobs            jobs waiting
//   kvc_running_jobs           jobs on the device
// Queued tokens measure a compress or generate worker's load better than CPU does (the device does the
// work), so the fleet's autoscaler and the queue-saturation alert use them.
//
// Ownership: borrows the scheduler, which must outlive every Collect call: stop the exposer (or remove
// this collectable from it) before the scheduler goes. Thread safety: Collect may run on any thread.
#ifndef KVC_SERVICE_SCHEDULER_METRICS_H_
#define KVC_SERVICE_SCHEDULER_METRICS_H_

#include <cstdint>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "service/scheduler.h"

namespace kvc {

class SchedulerCollector final : public prometheus::Collectable {
 public:
  SchedulerCollector(const Scheduler* scheduler, int64_t capacity_tokens)
      : scheduler_(scheduler), capacity_tokens_(capacity_tokens) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Scheduler* const scheduler_;
  const int64_t capacity_tokens_;
};

}  // namespace kvc

#endif  // KVC_SERVICE_SCHEDULER_METRICS_H_
