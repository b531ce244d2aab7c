// The architecture of a Llama-family model (Llama 2/3, Mistral, Qwen2, SmolLM2), read from a Hugging Face
// config.json or from GGUF metadata.
#ifndef KVC_COMPRESSOR_MODEL_MODEL_CONFIG_H_
#define KVC_COMPRESSOR_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvc {

class GgufFile;

enum class RopeScalingType { kNone, kLinear, kLlama3, kYarn };

// Rotary-embedding frequency scaling, with Hugging Face's field names and defaults.
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;          // 0: unset
  double mscale_all_dim = 0.0;  // 0: unset
  double attention_factor = 0.0;  // 0: derived from factor (and mscale) as Hugging Face does
  bool truncate = true;
};

// Hugging Face's name of a scaling type: "default", "linear", "llama3" or "yarn".
const char* RopeTypeName(RopeScalingType type);

struct ModelConfig {
  std::string architecture;  // "llama", "mistral" or "qwen2"
  std::string name;          // human-readable, for logs and caches
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  int64_t sliding_window = 0;  // 0: full attention
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2)
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;

  // INVALID_ARGUMENT naming the first inconsistent field.
  absl::Status Validate() const;
  // A stable text form of every field that changes the computation; part of the model fingerprint.
  std::string CanonicalString() const;
};

// From the text of a Hugging Face config.json. UNIMPLEMENTED for architectures outside the Llama family.
absl::StatusOr<ModelConfig> ModelConfigFromHfJson(absl::string_view json_text);
// From GGUF metadata (llama.* / qwen2.* keys). UNIMPLEMENTED for other architectures.
absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& gguf);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_MODEL_CONFIG_H_
