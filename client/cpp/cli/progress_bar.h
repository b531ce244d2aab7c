// A progress line for long batch commands (`kvc precompute`), written to a stream, usually stderr:
//
//   [##########----------]  512/1024  50.0%  12.3 doc/s  ETA 0:41
//
// On a terminal the line is redrawn in place (at most 10 times a second). Elsewhere (a log file, CI) a
// full line is written at each 10% step instead, so logs stay short. The rate counts only documents done
// by this run, so a resumed run's ETA is not skewed by the documents it skipped.
//
// Thread safety: every method may be called from any number of threads; writes are serialized by the
// mutex the caller passes (the one that guards the stream).
#ifndef KVC_CLIENT_CPP_CLI_PROGRESS_BAR_H_
#define KVC_CLIENT_CPP_CLI_PROGRESS_BAR_H_

#include <cstdint>
#include <iosfwd>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kvc::cli {

struct ProgressBarOptions {
  // Redraw in place (a terminal) or write a line per 10% step.
  bool interactive = false;
  // Unit shown in the rate, e.g. "doc".
  std::string unit = "doc";
  int width = 30;
};

class ProgressBar {
 public:
  // `total`: items this run will process. `out` and `out_mu` are borrowed and must outlive the bar.
  ProgressBar(int64_t total, std::ostream* out, absl::Mutex* out_mu, const ProgressBarOptions& options);

  // Records `n` more items done.
  void Advance(int64_t n);
  // Draws the final state and ends the line.
  void Finish();

  // The line for `done` of `total` items after `elapsed`; exposed for tests.
  static std::string Render(int64_t done, int64_t total, absl::Duration elapsed, const ProgressBarOptions& options);

 private:
  void DrawLocked(bool final_draw) ABSL_EXCLUSIVE_LOCKS_REQUIRED(*out_mu_);

  const int64_t total_;
  std::ostream* const out_;
  absl::Mutex* const out_mu_;
  const ProgressBarOptions options_;
  const absl::Time start_;
  int64_t done_ ABSL_GUARDED_BY(*out_mu_) = 0;
  absl::Time last_draw_ ABSL_GUARDED_BY(*out_mu_) = absl::InfinitePast();
  int last_decile_ ABSL_GUARDED_BY(*out_mu_) = 0;
  int64_t last_drawn_done_ ABSL_GUARDED_BY(*out_mu_) = -1;
  bool finished_ ABSL_GUARDED_BY(*out_mu_) = false;
};

}  // namespace kvc::cli

#endif  // KVC_CLIENT_CPP_CLI_PROGRESS_BAR_H_
