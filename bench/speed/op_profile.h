// One call under LibTorch's profiler (Kineto), summed per operation: where a compression's time goes on the
// host (ATen ops, the methods' named phases, CUDA runtime calls) and on the device (kernels, copies). On CUDA the
// question it answers is whether a step is bound by the GPU's work or by the host: launches, and calls that
// wait for the device (a synchronize, a copy to pageable memory, an .item()).
//
// Thread safety: LibTorch's profiler is process-wide; profile one call at a time. Only ops run on the calling
// thread are recorded (intra-op worker threads are not; their time is inside the op that started them).
#ifndef KVC_BENCH_SPEED_OP_PROFILE_H_
#define KVC_BENCH_SPEED_OP_PROFILE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvc {

// What an event is, from where it ran: "op" (an ATen operator on the host), "scope" (a user span: the
// methods' phases, compressor/methods/phase_span.h), "runtime" (a CUDA runtime or driver call on the host),
// "kernel" and "copy" (device work: kernels; memcpy and memset).
struct OpProfileRow {
  std::string kind;
  std::string name;
  int64_t count = 0;
  double total_ms = 0;  // summed durations; nested ops each count their own span
};

struct OpProfile {
  double wall_ms = 0;         // the call, ended by a device synchronize on CUDA
  double device_ms = 0;       // kernels and copies, summed (0 without CUDA)
  int64_t kernels = 0;        // device kernels launched
  int64_t host_waits = 0;     // runtime calls that block the host until the device catches up
  std::vector<OpProfileRow> rows;  // every (kind, name), the largest total first
};

struct OpProfileOptions {
  bool cuda = false;        // also record CUDA kernels, copies and runtime calls
  std::string trace_path;   // if set, a Chrome trace (chrome://tracing, Perfetto) of the call is written there
};

// Runs `call` once under the profiler. Returns call's error if it fails, or an error if the profiler cannot
// start (another profile is running).
absl::StatusOr<OpProfile> ProfileCall(const std::function<absl::Status()>& call, const OpProfileOptions& options);

// The rows as a Markdown table: the `top` largest of each kind, kinds in the order above.
std::string OpProfileTable(const OpProfile& profile, int top);

}  // namespace kvc

#endif  // KVC_BENCH_SPEED_OP_PROFILE_H_
