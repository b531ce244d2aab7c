#include "bench/speed/op_profile.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <utility>

#include <kineto/ActivityType.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace kvc {
namespace {

namespace prof = torch::profiler::impl;
namespace autograd_prof = torch::autograd::profiler;

constexpr const char* kKinds[] = {"op", "scope", "runtime", "kernel", "copy"};

const char* KindOf(uint8_t activity) {
  switch (static_cast<libkineto::ActivityType>(activity)) {
    case libkineto::ActivityType::CPU_OP: return "op";
    case libkineto::ActivityType::USER_ANNOTATION: return "scope";
    case libkineto::ActivityType::CUDA_RUNTIME:
    case libkineto::ActivityType::CUDA_DRIVER: return "runtime";
    case libkineto::ActivityType::CONCURRENT_KERNEL: return "kernel";
    case libkineto::ActivityType::GPU_MEMCPY:
    case libkineto::ActivityType::GPU_MEMSET: return "copy";
    default: return nullptr;
  }
}

// Runtime calls that return only once the device has drained the work before them. (A cudaMemcpyAsync into
// pageable host memory waits too, but its name does not say so; it shows as a long "runtime" row.)
bool HostWaits(const std::string& name) {
  static const std::set<std::string>* const kWaits = new std::set<std::string>{
      "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy", "cuStreamSynchronize",
      "cuCtxSynchronize", "cuEventSynchronize", "cuMemcpyDtoH_v2"};
  return kWaits->count(name) > 0;
}

}  // namespace

absl::StatusOr<OpProfile> ProfileCall(const std::function<absl::Status()>& call, const OpProfileOptions& options) {
  if (prof::profilerEnabled()) {
    return absl::FailedPreconditionError("ProfileCall: LibTorch's profiler is already running");
  }
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (options.cuda) activities.insert(prof::ActivityType::CUDA);
  autograd_prof::prepareProfiler(config, activities);
  autograd_prof::enableProfiler(config, activities);
  const auto t0 = std::chrono::steady_clock::now();
  absl::Status status = call();
  if (options.cuda) torch::cuda::synchronize();
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::unique_ptr<autograd_prof::ProfilerResult> result = autograd_prof::disableProfiler();
  if (!status.ok()) return status;

  OpProfile profile;
  profile.wall_ms = wall_ms;
  std::map<std::pair<std::string, std::string>, OpProfileRow> rows;
  for (const autograd_prof::KinetoEvent& e : result->events()) {
    const char* kind = KindOf(e.activityType());
    if (kind == nullptr) continue;
    const std::string name = e.name();
    const double ms = static_cast<double>(e.durationNs()) / 1e6;
    OpProfileRow& row = rows[{kind, name}];
    row.kind = kind;
    row.name = name;
    ++row.count;
    row.total_ms += ms;
    const std::string k = kind;
    if (k == "kernel" || k == "copy") profile.device_ms += ms;
    if (k == "kernel") ++profile.kernels;
    if (k == "runtime" && HostWaits(name)) ++profile.host_waits;
  }
  for (auto& [key, row] : rows) profile.rows.push_back(std::move(row));
  std::sort(profile.rows.begin(), profile.rows.end(),
            [](const OpProfileRow& a, const OpProfileRow& b) { return a.total_ms > b.total_ms; });
  if (!options.trace_path.empty()) result->save(options.trace_path);
  return profile;
}

std::string OpProfileTable(const OpProfile& profile, int top) {
  std::string out = absl::StrFormat(
      "call %.2f ms; device busy %.2f ms in %d kernels; %d host waits for the device\n\n"
      "| kind | name | count | total ms | ms each |\n|---|---|---:|---:|---:|\n",
      profile.wall_ms, profile.device_ms, profile.kernels, profile.host_waits);
  for (const char* kind : kKinds) {
    int shown = 0;
    for (const OpProfileRow& row : profile.rows) {
      if (row.kind != kind || shown++ >= top) continue;
      // Kernel names are C++ signatures: keep the table's columns intact.
      std::string name = absl::StrReplaceAll(row.name.substr(0, 120), {{"|", "\\|"}});
      absl::StrAppendFormat(&out, "| %s | `%s` | %d | %.3f | %.4f |\n", kind, name, row.count, row.total_ms,
                            row.total_ms / static_cast<double>(row.count));
    }
  }
  return out;
}

}  // namespace kvc
