// Latency samples and their summary (count, mean, p50, p90, p99, max), for the service benchmarks.
//
// Thread safety: a Latencies is not synchronized; give each thread its own and Merge them afterwards.
#ifndef KVC_BENCH_SERVICE_LATENCY_H_
#define KVC_BENCH_SERVICE_LATENCY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace kvc::bench {

struct LatencySummary {
  int64_t count = 0;
  double mean_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
};

class Latencies {
 public:
  void Add(double seconds) { seconds_.push_back(seconds); }
  void Merge(const Latencies& other) { seconds_.insert(seconds_.end(), other.seconds_.begin(), other.seconds_.end()); }
  int64_t count() const { return static_cast<int64_t>(seconds_.size()); }
  // Nearest-rank percentiles; all zero when there are no samples.
  LatencySummary Summary() const;

 private:
  std::vector<double> seconds_;
};

// "12.345": milliseconds with three decimals.
std::string Ms(double ms);

}  // namespace kvc::bench

#endif  // KVC_BENCH_SERVICE_LATENCY_H_
