// Greedy decoding over a LlamaModel: the reference decoder for parity tests and a building block for the
// generator.
#ifndef KVC_COMPRESSOR_MODEL_GREEDY_H_
#define KVC_COMPRESSOR_MODEL_GREEDY_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "compressor/kv/kv_cache.h"
#include "compressor/model/llama_model.h"

namespace kvc {

struct GreedyOptions {
  int64_t max_new_tokens = 32;
  // Generation stops after emitting any of these (the stop token is included in the result).
  std::vector<int64_t> stop_token_ids;
  int64_t prefill_chunk_tokens = 512;
};

// Prefills `prompt` into `cache` (continuing from cache.next_position()) and decodes greedily.
// Returns the generated token ids. The cache holds prompt and output afterwards.
absl::StatusOr<std::vector<int64_t>> GenerateGreedy(const LlamaModel& model, const std::vector<int64_t>& prompt,
                                                    KvCache& cache, const GreedyOptions& options = {});

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_GREEDY_H_
