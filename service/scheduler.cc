#include "service/scheduler.h"

#include "absl/strings/str_cat.h"
#include "service/call_stop.h"

namespace kvc {

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerOptions& options) {
  if (options.workers < 1) return absl::InvalidArgumentError("scheduler: workers must be >= 1");
  if (options.max_queue_tokens < 1) return absl::InvalidArgumentError("scheduler: max_queue_tokens must be >= 1");
  auto s = std::unique_ptr<Scheduler>(new Scheduler(options));
  for (int i = 0; i < options.workers; ++i) s->workers_.emplace_back([p = s.get()] { p->WorkerLoop(); });
  return s;
}

Scheduler::~Scheduler() {
  Drain(absl::InfiniteDuration());
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

absl::Status Scheduler::Submit(Job job) {
  if (!job.run) return absl::InvalidArgumentError("scheduler: job without a run function");
  if (job.cost_tokens < 0) return absl::InvalidArgumentError("scheduler: negative job cost");
  if (job.cost_tokens > options_.max_queue_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("request of ", job.cost_tokens, " tokens is larger than the ",
                                                   options_.name, " queue (", options_.max_queue_tokens,
                                                   " tokens); it can never be admitted"));
  }
  absl::MutexLock lock(&mu_);
  if (draining_) return absl::UnavailableError(absl::StrCat(options_.name, " scheduler is draining"));
  if (queued_tokens_ + job.cost_tokens > options_.max_queue_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(options_.name, " queue is full: ", queued_tokens_, " tokens in ",
                                                     queue_.size(), " requests wait, the limit is ",
                                                     options_.max_queue_tokens, "; retry later"));
  }
  queued_tokens_ += job.cost_tokens;
  queue_.push_back(Queued{std::move(job), absl::Now()});
  return absl::OkStatus();
}

void Scheduler::WorkerLoop() {
  for (;;) {
    Queued q;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Scheduler* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return !s->queue_.empty() || s->stopping_; },
          this));
      if (queue_.empty()) return;  // stopping, and nothing left
      q = std::move(queue_.front());
      queue_.pop_front();
      queued_tokens_ -= q.job.cost_tokens;
      ++running_;
    }
    JobStart start{absl::OkStatus(), absl::Now() - q.enqueued};
    start.status = CallStop(q.job.cancelled && q.job.cancelled(), q.job.deadline,
                            absl::StrCat("after ", absl::FormatDuration(start.queued), " in the queue"));
    q.job.run(start);
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

bool Scheduler::Drain(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](Scheduler* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->queue_.empty() && s->running_ == 0; },
          this),
      timeout);
}

SchedulerStats Scheduler::stats() const {
  absl::MutexLock lock(&mu_);
  return SchedulerStats{static_cast<int64_t>(queue_.size()), queued_tokens_, running_};
}

}  // namespace kvc
