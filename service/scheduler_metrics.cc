#include "service/scheduler_metrics.h"

#include <string>

namespace kvc {
namespace {

prometheus::MetricFamily Gauge(std::string name, std::string help, double value) {
  prometheus::ClientMetric metric;
  metric.gauge.value = value;
  return prometheus::MetricFamily{std::move(name), std::move(help), prometheus::MetricType::Gauge, {metric}};
}

}  // namespace

std::vector<prometheus::MetricFamily> SchedulerCollector::Collect() const {
  const SchedulerStats stats = scheduler_->stats();
  return {
      Gauge("kvc_queued_tokens", "Tokens waiting for the device", static_cast<double>(stats.queued_tokens)),
      Gauge("kvc_queue_capacity_tokens", "Tokens allowed to wait for the device (--max-queue-tokens)",
            static_cast<double>(capacity_tokens_)),
      Gauge("kvc_queued_jobs", "Model jobs waiting for the device", static_cast<double>(stats.queued_jobs)),
      Gauge("kvc_running_jobs", "Model jobs on the device", static_cast<double>(stats.running_jobs)),
  };
}

}  // namespace kvc
