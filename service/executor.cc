#include "service/executor.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace kvc {

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const ExecutorOptions& options) {
  if (options.threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("executor threads: ", options.threads, ", must be >= 1"));
  }
  if (options.max_queued < 1) {
    return absl::InvalidArgumentError(absl::StrCat("executor max_queued: ", options.max_queued, ", must be >= 1"));
  }
  return std::unique_ptr<Executor>(new Executor(options));
}

Executor::Executor(const ExecutorOptions& options) : max_queued_(static_cast<size_t>(options.max_queued)) {
  threads_.reserve(options.threads);
  for (int i = 0; i < options.threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

Executor::~Executor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // Workers drain the queue before they exit: a queued task may be the only thing that will ever finish
  // its RPC, and a server shutdown waits for every RPC to finish.
  for (std::thread& t : threads_) t.join();
}

absl::Status Executor::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("server is shutting down");
  if (queue_.size() >= max_queued_) {
    return absl::ResourceExhaustedError(absl::StrCat("server busy: ", queue_.size(), " requests already queued"));
  }
  queue_.push_back(std::move(task));
  return absl::OkStatus();
}

size_t Executor::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

bool Executor::HasWorkOrStopping() const { return stopping_ || !queue_.empty(); }

void Executor::WorkerLoop() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Executor::HasWorkOrStopping));
      if (queue_.empty()) return;  // stopping, and nothing left to run
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace kvc
