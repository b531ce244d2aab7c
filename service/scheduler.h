// The scheduler that owns a device: model work (compression, generation) runs on its worker threads, in
// arrival order, never on gRPC threads. Admission is by queued tokens: a job declares its cost (tokens to
// prefill or decode), and Submit refuses it with RESOURCE_EXHAUSTED when the tokens already waiting plus
// its own would pass the limit, so that a burst becomes fast rejections instead of unbounded latency.
//
// A job that is cancelled or whose deadline passes while it waits is not started: it is called with the
// reason (CANCELLED / DEADLINE_EXCEEDED) so that its RPC can finish. Drain stops admission (UNAVAILABLE)
// and waits for queued and running jobs.
//
// Ownership: the scheduler owns its threads; destroying it drains without a time limit.
// Thread safety: every method may be called from any thread.
#ifndef KVC_SERVICE_SCHEDULER_H_
#define KVC_SERVICE_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kvc {

struct SchedulerOptions {
  std::string name = "cpu";         // for messages: the device this scheduler owns
  int workers = 1;                  // concurrent jobs; 1 per device keeps the model's threads uncontended
  int64_t max_queue_tokens = 1 << 20;  // waiting tokens admitted at most (running jobs do not count)
};

struct JobStart {
  absl::Status status;         // OK: run; CANCELLED / DEADLINE_EXCEEDED / UNAVAILABLE: finish with it
  absl::Duration queued;       // time spent waiting
};

struct Job {
  int64_t cost_tokens = 0;                 // >= 0; counts against max_queue_tokens while waiting
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> cancelled;         // polled before the job starts; may be empty
  std::function<void(const JobStart&)> run;  // called exactly once, on a worker thread
};

struct SchedulerStats {
  int64_t queued_jobs = 0;
  int64_t queued_tokens = 0;
  int64_t running_jobs = 0;
};

class Scheduler {
 public:
  // INVALID_ARGUMENT for workers < 1 or max_queue_tokens < 1.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const SchedulerOptions& options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues the job. RESOURCE_EXHAUSTED (queue full; the message gives the numbers), UNAVAILABLE (draining),
  // INVALID_ARGUMENT (no run function, negative cost, or a cost larger than the whole queue). On error the
  // job is not queued and `run` is never called.
  absl::Status Submit(Job job);

  // Refuses new jobs from now on, then waits up to `timeout` for the queue to empty and running jobs to end.
  // Returns true if everything finished in time.
  bool Drain(absl::Duration timeout);

  SchedulerStats stats() const;

 private:
  struct Queued {
    Job job;
    absl::Time enqueued;
  };
  explicit Scheduler(const SchedulerOptions& options) : options_(options) {}
  void WorkerLoop();

  const SchedulerOptions options_;
  mutable absl::Mutex mu_;
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t running_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace kvc

#endif  // KVC_SERVICE_SCHEDULER_H_
