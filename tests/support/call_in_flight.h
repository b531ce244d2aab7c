// CallInFlight: one client call run on its own thread, so that a test can act on it (cancel it, let its
// deadline pass, stop the server) while the server holds its work at a pause point.
//
// Ownership: owns the thread and the call's context; the destructor joins. Thread safety: every method
// may be called from the owning thread while the call runs; Cancel also from any other.
#ifndef KVC_TESTS_SUPPORT_CALL_IN_FLIGHT_H_
#define KVC_TESTS_SUPPORT_CALL_IN_FLIGHT_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"

namespace kvc::testing {

class CallInFlight {
 public:
  // Runs `body` on the call's context at once; its status is the call's.
  using Body = std::function<grpc::Status(grpc::ClientContext* ctx)>;

  // The call's deadline is `timeout` from now.
  CallInFlight(std::chrono::milliseconds timeout, Body body);
  ~CallInFlight();
  CallInFlight(const CallInFlight&) = delete;
  CallInFlight& operator=(const CallInFlight&) = delete;

  absl::Time deadline() const { return deadline_; }
  void Cancel() { ctx_.TryCancel(); }
  bool done() const { return done_.load(); }
  // Waits for the call to end and returns its status.
  grpc::Status Wait();

 private:
  grpc::ClientContext ctx_;
  absl::Time deadline_;
  grpc::Status status_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace kvc::testing

#endif  // KVC_TESTS_SUPPORT_CALL_IN_FLIGHT_H_
