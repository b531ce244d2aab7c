// What else the machine was doing during a measurement: /proc/stat's busy time of all CPUs against the CPU
// time of the processes being measured, so that a report can say whether other work shared the cores.
// Linux only (reads /proc).
//
// Thread safety: the functions keep no state.
#ifndef KVC_BENCH_SERVICE_MACHINE_LOAD_H_
#define KVC_BENCH_SERVICE_MACHINE_LOAD_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace kvc::bench {

struct CpuSnapshot {
  double wall_seconds = 0;     // monotonic clock
  double busy_seconds = 0;     // all CPUs, /proc/stat minus idle and iowait
  double ours_seconds = 0;     // user + system time of the watched processes
};

// `pids`: the processes whose CPU time counts as the benchmark's own (0 means this process).
CpuSnapshot TakeCpuSnapshot(const std::vector<pid_t>& pids);

// "CPUs busy 1.93 of 2 (benchmark and server 1.10, other processes 0.83)" between two snapshots.
std::string DescribeCpuUse(const CpuSnapshot& before, const CpuSnapshot& after);

// "model name" of /proc/cpuinfo, the number of online CPUs and /proc/loadavg's first three fields.
std::string CpuModel();
int OnlineCpus();
std::string LoadAverage();

}  // namespace kvc::bench

#endif  // KVC_BENCH_SERVICE_MACHINE_LOAD_H_
