#include "compressor/model/greedy.h"

#include <algorithm>

#include "compressor/util/status_macros.h"

namespace kvc {

absl::StatusOr<std::vector<int64_t>> GenerateGreedy(const LlamaModel& model, const std::vector<int64_t>& prompt,
                                                    KvCache& cache, const GreedyOptions& options) {
  if (options.max_new_tokens < 0) return absl::InvalidArgumentError("max_new_tokens must be >= 0");
  std::vector<int64_t> out;
  if (options.max_new_tokens == 0) return out;
  KVC_ASSIGN_OR_RETURN(torch::Tensor logits, model.Prefill(prompt, cache, options.prefill_chunk_tokens));
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    int64_t next = logits.argmax().item<int64_t>();
    out.push_back(next);
    if (std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), next) !=
            options.stop_token_ids.end() ||
        step + 1 == options.max_new_tokens) {
      break;
    }
    torch::Tensor tok = torch::tensor({next}, torch::kInt64);
    torch::Tensor pos = torch::tensor({cache.next_position()}, torch::kInt64);
    KVC_ASSIGN_OR_RETURN(ForwardOutput fo, model.Forward(tok, pos, cache, ForwardOptions{{0}, 0}));
    cache.set_next_position(cache.next_position() + 1);
    logits = fo.logits[0];
  }
  return out;
}

}  // namespace kvc
