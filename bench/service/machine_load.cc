#include "bench/service/machine_load.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kvc::bench {
namespace {

double Ticks() { return static_cast<double>(sysconf(_SC_CLK_TCK)); }

double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/stat") : absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name may hold spaces; the fields after it start behind the last ')'.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> f = absl::StrSplit(text.substr(close + 2), ' ', absl::SkipEmpty());
  // After the name: state is field 3, utime 14 and stime 15 of the whole line.
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) / Ticks();
}

}  // namespace

CpuSnapshot TakeCpuSnapshot(const std::vector<pid_t>& pids) {
  CpuSnapshot s;
  s.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  std::ifstream in("/proc/stat");
  std::string line;
  if (std::getline(in, line) && absl::StartsWith(line, "cpu ")) {
    std::istringstream fields(line.substr(4));
    double v[8] = {0};
    for (double& x : v) fields >> x;
    double total = 0;
    for (double x : v) total += x;
    s.busy_seconds = (total - v[3] - v[4]) / Ticks();  // minus idle and iowait
  }
  for (pid_t p : pids) s.ours_seconds += ProcessCpuSeconds(p);
  return s;
}

std::string DescribeCpuUse(const CpuSnapshot& a, const CpuSnapshot& b) {
  const double wall = b.wall_seconds - a.wall_seconds;
  if (wall <= 0) return "no interval";
  const double busy = (b.busy_seconds - a.busy_seconds) / wall;
  const double ours = (b.ours_seconds - a.ours_seconds) / wall;
  return absl::StrFormat("CPUs busy %.2f of %d (benchmark and server %.2f, other processes %.2f)", busy,
                         OnlineCpus(), ours, std::max(0.0, busy - ours));
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "model name")) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return "unknown";
}

int OnlineCpus() { return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)); }

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

}  // namespace kvc::bench
