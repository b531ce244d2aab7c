// CallStop: why a call's work stops, by one rule for every role and the scheduler, so that a call stopped
// in any phase ends, and is counted, under the same code.
//
// A client whose deadline passes cancels its stream. The server's copy of the deadline comes from the
// relative grpc-timeout header, taken when the request arrived, so it is later than the client's by the
// request's transit time, and the client's cancel can reach the server first. A cancel seen within
// kDeadlineSlack of the deadline is therefore the deadline's: DEADLINE_EXCEEDED, as the client reports it.
//
// Thread safety: pure functions.
#ifndef KVC_SERVICE_CALL_STOP_H_
#define KVC_SERVICE_CALL_STOP_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kvc {

inline constexpr absl::Duration kDeadlineSlack = absl::Milliseconds(250);

// DEADLINE_EXCEEDED "deadline passed <phase>" or CANCELLED "call cancelled <phase>" when the work should
// stop now (`cancelled`: the call was cancelled, by its client or by gRPC); OK when it may go on.
absl::Status CallStop(bool cancelled, absl::Time deadline, absl::string_view phase);

}  // namespace kvc

#endif  // KVC_SERVICE_CALL_STOP_H_
