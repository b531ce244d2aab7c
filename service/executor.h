// Executor: a fixed pool of threads that runs submitted tasks in FIFO order, with a bounded queue.
//
// The gRPC roles hand it the blocking part of a call (store I/O, hashing, .kvc validation) so that gRPC's
// own threads never wait on it. A full queue is an answer, not a wait: Submit returns RESOURCE_EXHAUSTED
// at once and the caller fails the call, which is what DESIGN §7 asks for when a server is overloaded.
//
// Ownership: the executor owns its threads. Tasks own whatever they capture.
// Thread safety: Submit may be called from any number of threads at once, including from inside a task.
// Destruction stops accepting tasks, runs every task already queued, then joins the threads; it must not
// run on one of the executor's own threads.
#ifndef KVC_SERVICE_EXECUTOR_H_
#define KVC_SERVICE_EXECUTOR_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kvc {

struct ExecutorOptions {
  int threads = 4;
  // Tasks waiting for a thread (not counting the ones running). Submit fails past this.
  int max_queued = 256;
};

class Executor {
 public:
  // INVALID_ARGUMENT when threads or max_queued is < 1.
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const ExecutorOptions& options);

  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task` to run on one of the pool's threads. RESOURCE_EXHAUSTED when max_queued tasks are already
  // waiting; UNAVAILABLE once destruction has begun. On an error the task is dropped without running.
  absl::Status Submit(std::function<void()> task);

  // Tasks waiting for a thread right now; for tests and metrics.
  size_t queued() const;

 private:
  explicit Executor(const ExecutorOptions& options);
  void WorkerLoop();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_queued_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace kvc

#endif  // KVC_SERVICE_EXECUTOR_H_
