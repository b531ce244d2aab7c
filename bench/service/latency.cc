#include "bench/service/latency.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"

namespace kvc::bench {

LatencySummary Latencies::Summary() const {
  LatencySummary s;
  if (seconds_.empty()) return s;
  std::vector<double> v = seconds_;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  auto rank = [&](double p) {
    const size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
    return v[std::min(n - 1, i == 0 ? 0 : i - 1)] * 1e3;
  };
  s.count = static_cast<int64_t>(n);
  s.mean_ms = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(n) * 1e3;
  s.p50_ms = rank(0.50);
  s.p90_ms = rank(0.90);
  s.p99_ms = rank(0.99);
  s.max_ms = v.back() * 1e3;
  return s;
}

std::string Ms(double ms) { return absl::StrFormat("%.3f", ms); }

}  // namespace kvc::bench
