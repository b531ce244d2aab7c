// Named spans over the phases of a compression (a chunk's prefill, the query pass, selection, gather), so a
// profiler's trace (kvc-bench-compress --profile) says which phase the ops and kernels belong to. Free when
// no profiler runs: LibTorch's RecordFunction is inactive then.
//
// Thread safety: one per thread; a span belongs to the thread that opened it.
#ifndef KVC_COMPRESSOR_METHODS_PHASE_SPAN_H_
#define KVC_COMPRESSOR_METHODS_PHASE_SPAN_H_

#include <optional>

#include <ATen/record_function.h>

namespace kvc {

class PhaseSpan {
 public:
  // `name` must outlive the span (a string literal).
  explicit PhaseSpan(const char* name) { Open(name); }
  PhaseSpan(const PhaseSpan&) = delete;
  PhaseSpan& operator=(const PhaseSpan&) = delete;

  // Ends the current phase and opens the next; the last one ends with the object.
  void Next(const char* name) {
    span_.reset();
    Open(name);
  }

 private:
  void Open(const char* name) {
    span_.emplace(at::RecordScope::USER_SCOPE);
    if (span_->isActive()) span_->before(name);
  }

  std::optional<at::RecordFunction> span_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_METHODS_PHASE_SPAN_H_
