// Converts LibTorch exceptions into absl::Status at the compressor's public API, the only place where
// they are caught: out-of-memory becomes RESOURCE_EXHAUSTED, any other c10::Error INTERNAL.
#ifndef KVC_COMPRESSOR_UTIL_TORCH_STATUS_H_
#define KVC_COMPRESSOR_UTIL_TORCH_STATUS_H_

#include <c10/util/Exception.h>

#include <new>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvc {

// Runs fn() (returning absl::Status or absl::StatusOr<T>) and maps exceptions to a status of that type.
template <typename Fn>
auto CatchTorch(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(std::string("device out of memory: ") + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("host out of memory");
  } catch (const c10::Error& e) {
    return absl::InternalError(std::string("torch error: ") + e.what_without_backtrace());
  }
}

}  // namespace kvc

#endif  // KVC_COMPRESSOR_UTIL_TORCH_STATUS_H_
