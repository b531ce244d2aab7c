// PausePoints: a test hook that holds a call's work at a named point, so that end-to-end tests can cancel
// it, let its deadline pass or send SIGTERM while the work is known to be in a given phase, whatever the
// speed of the machine. It is off unless kvc-server starts with the hidden --test-pause-dir flag; the roles
// hold a nullable pointer, and a null one costs a branch.
//
// Protocol, through files in the control directory D (a test drives it with tests/support/pause_control.h):
//   1. the test arms a point by creating D/<point>.arm;
//   2. the next arrival at that point renames D/<point>.arm to D/<point>.held (one arrival wins the rename;
//      the others, and every arrival at a point that is not armed, pass straight through) and waits;
//   3. the test sees D/<point>.held (the work is there), acts, and removes the file, which releases it.
// While it holds, the arrival also watches its call: once the call has stopped (cancelled, or past its
// deadline) as the server sees it, the arrival writes D/<point>.stop_seen with its token. A client's cancel
// travels to the server, so a test that stops a call waits for that file before it releases the work, and
// the check after the point then sees the stop whatever the speed of the machine or the network.
// Each arm file holds a token of its own, and a hold lasts while D/<point>.held still holds its token.
// Arming the point again before releasing it holds the next arrival too (e.g. the third prefill chunk).
//
// PauseControl is the test's side of the same protocol.
//
// Ownership: both hold only the directory's path. Thread safety: PausePoints::Reach may be called from any
// thread at once; a point is driven by one PauseControl caller at a time.
#ifndef KVC_SERVICE_PAUSE_POINTS_H_
#define KVC_SERVICE_PAUSE_POINTS_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kvc {

// The points, in the order a call meets them. Each stop check that follows a point sees a cancel or a
// deadline that arrived while the work was held there.
namespace pause_point {
// Compress and Precompute.
inline constexpr char kCompressTokenize[] = "compress.tokenize";     // executor, before tokenizing
inline constexpr char kCompressQueued[] = "compress.queued";         // executor, the job just entered the queue
inline constexpr char kCompressPrefillChunk[] = "compress.prefill_chunk";  // device, before each chunk
inline constexpr char kCompressCompressed[] = "compress.compressed";  // device, selection done
inline constexpr char kCompressSerialize[] = "compress.serialize";   // executor, before encoding the .kvc
inline constexpr char kCompressStore[] = "compress.store";           // executor, before the store Put
// Generate.
inline constexpr char kGenerateLoad[] = "generate.load";             // executor, before loading the caches
inline constexpr char kGenerateTokenize[] = "generate.tokenize";     // executor, before tokenizing the query
inline constexpr char kGenerateQueued[] = "generate.queued";         // executor, the job just entered the queue
// device: before composing (first arrival), then before each decode step after the first token (arrival
// n + 1 has streamed n tokens).
inline constexpr char kGenerateDecodeStep[] = "generate.decode_step";
inline constexpr char kGenerateStream[] = "generate.stream";         // device, decoding done, usage not sent
}  // namespace pause_point

class PausePoints {
 public:
  // `dir` must be an existing directory: INVALID_ARGUMENT otherwise.
  static absl::StatusOr<std::unique_ptr<PausePoints>> Create(const std::string& dir);

  // Returns at once unless `point` is armed; then holds the calling thread until the test releases it.
  // `stopped` (optional) says whether the call has stopped; it is polled only while held, and must stay
  // safe to call until Reach returns.
  void Reach(absl::string_view point, const std::function<bool()>& stopped = nullptr) const;

 private:
  explicit PausePoints(std::string dir) : dir_(std::move(dir)) {}
  const std::string dir_;
};

class PauseControl {
 public:
  explicit PauseControl(std::string dir) : dir_(std::move(dir)) {}

  // Holds the next arrival at `point`. INTERNAL when the file cannot be made.
  absl::Status Arm(absl::string_view point) const;
  // Withdraws an arm no arrival took (no-op otherwise).
  void Disarm(absl::string_view point) const;
  // Whether an arrival is held at `point` now.
  bool Held(absl::string_view point) const;
  // Waits until an arrival is held at `point`: OK; DEADLINE_EXCEEDED at `until`; CANCELLED as soon as
  // `give_up` (optional, polled) returns true, e.g. because the call already ended elsewhere.
  absl::Status WaitHeld(absl::string_view point, absl::Time until,
                        const std::function<bool()>& give_up = nullptr) const;
  // Waits until the arrival held at `point` has seen its call stop: OK; FAILED_PRECONDITION when nothing is
  // held; DEADLINE_EXCEEDED at `until`.
  absl::Status WaitStopSeen(absl::string_view point, absl::Time until) const;
  // Lets the held arrival go on. FAILED_PRECONDITION when none is held.
  absl::Status Release(absl::string_view point) const;
  // Holds the `arrival`-th arrival at `point` from now (1: the next), letting the earlier ones pass; returns
  // once it is held, with WaitHeld's errors.
  absl::Status HoldAt(absl::string_view point, int arrival, absl::Time until,
                      const std::function<bool()>& give_up = nullptr) const;
  // HoldAt for a point the test armed itself before it started the work, so that the count of arrivals
  // starts there and not at whatever the work had reached by the time HoldAt is called.
  absl::Status HoldAtArmed(absl::string_view point, int arrival, absl::Time until,
                           const std::function<bool()>& give_up = nullptr) const;
  // Holds and releases each arrival at `point` from now, one at a time, until `done` (polled) returns true
  // or `until` passes; returns how many arrived. Each hold is the work's chance to see a stop.
  int CountArrivals(absl::string_view point, absl::Time until, const std::function<bool()>& done) const;

 private:
  std::string Path(absl::string_view point, absl::string_view suffix) const;
  std::string dir_;
};

// For in-process tests: a fresh control directory under the system's temporary directory with the
// PausePoints a service borrows and the PauseControl the test drives; the directory goes with the object,
// which must outlive the service.
class TempPauseDir {
 public:
  // INTERNAL when the directory cannot be made.
  static absl::StatusOr<std::unique_ptr<TempPauseDir>> Create();
  ~TempPauseDir();
  TempPauseDir(const TempPauseDir&) = delete;
  TempPauseDir& operator=(const TempPauseDir&) = delete;

  const PausePoints* points() const { return points_.get(); }
  const PauseControl& control() const { return control_; }

 private:
  TempPauseDir(std::string dir, std::unique_ptr<PausePoints> points)
      : dir_(std::move(dir)), points_(std::move(points)), control_(dir_) {}
  const std::string dir_;
  const std::unique_ptr<PausePoints> points_;
  const PauseControl control_;
};

// For the roles' optional pointer: Reach when `points` is set.
inline void ReachPausePoint(const PausePoints* points, absl::string_view point,
                            const std::function<bool()>& stopped = nullptr) {
  if (points != nullptr) points->Reach(point, stopped);
}

}  // namespace kvc

#endif  // KVC_SERVICE_PAUSE_POINTS_H_
