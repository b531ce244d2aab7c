#include "service/call_stop.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kvc {

absl::Status CallStop(bool cancelled, absl::Time deadline, absl::string_view phase) {
  const absl::Time now = absl::Now();
  if (now >= deadline || (cancelled && now >= deadline - kDeadlineSlack)) {
    return absl::DeadlineExceededError(absl::StrCat("deadline passed ", phase));
  }
  if (cancelled) return absl::CancelledError(absl::StrCat("call cancelled ", phase));
  return absl::OkStatus();
}

}  // namespace kvc
