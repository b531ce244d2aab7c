// The model fingerprint: SHA-256 over the architecture and the bytes of every file that defines the
// model's weights and tokenizer. A cache made under one fingerprint never loads into another model.
#ifndef KVC_COMPRESSOR_MODEL_FINGERPRINT_H_
#define KVC_COMPRESSOR_MODEL_FINGERPRINT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compressor/model/model_config.h"

namespace kvc {

// `files`: weight files (all shards) and tokenizer files, in a stable order. Returns 64 lowercase hex chars.
absl::StatusOr<std::string> ComputeFingerprint(const ModelConfig& config, const std::vector<std::string>& files);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_FINGERPRINT_H_
