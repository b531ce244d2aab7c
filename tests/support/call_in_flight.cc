#include "tests/support/call_in_flight.h"

#include <utility>

#include "absl/time/clock.h"

namespace kvc::testing {

CallInFlight::CallInFlight(std::chrono::milliseconds timeout, Body body) {
  const auto deadline = std::chrono::system_clock::now() + timeout;
  ctx_.set_deadline(deadline);
  deadline_ = absl::FromChrono(deadline);
  thread_ = std::thread([this, body = std::move(body)] {
    status_ = body(&ctx_);
    done_ = true;
  });
}

CallInFlight::~CallInFlight() {
  if (thread_.joinable()) thread_.join();
}

grpc::Status CallInFlight::Wait() {
  if (thread_.joinable()) thread_.join();
  return status_;
}

}  // namespace kvc::testing
