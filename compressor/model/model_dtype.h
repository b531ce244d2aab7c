// The names a user may give for the dtype a model computes in (flags, environment variables, configs).
#ifndef KVC_COMPRESSOR_MODEL_MODEL_DTYPE_H_
#define KVC_COMPRESSOR_MODEL_MODEL_DTYPE_H_

#include <optional>
#include <string>

#include <torch/types.h>

#include "absl/status/statusor.h"

namespace kvc {

// "auto" or "" (the device's default: float32 on CPU, bfloat16 on CUDA), float32/f32/fp32,
// bfloat16/bf16, float16/f16/fp16/half. INVALID_ARGUMENT for anything else.
absl::StatusOr<std::optional<torch::ScalarType>> ParseModelDtype(const std::string& name);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_MODEL_DTYPE_H_
