#include "compressor/model/model_dtype.h"

#include "absl/strings/str_cat.h"

namespace kvc {

absl::StatusOr<std::optional<torch::ScalarType>> ParseModelDtype(const std::string& name) {
  if (name == "auto" || name.empty()) return std::optional<torch::ScalarType>();
  if (name == "float32" || name == "f32" || name == "fp32") return std::optional(torch::kFloat32);
  if (name == "bfloat16" || name == "bf16") return std::optional(torch::kBFloat16);
  if (name == "float16" || name == "f16" || name == "fp16" || name == "half") return std::optional(torch::kFloat16);
  return absl::InvalidArgumentError(
      absl::StrCat("dtype: unknown '", name, "' (use auto, float32, bfloat16 or float16)"));
}

}  // namespace kvc
