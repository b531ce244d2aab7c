// Picks the next token from a model's next-token logits: greedy argmax, or temperature / top-k / top-p
// (nucleus) sampling with a seeded std::mt19937_64, so that a seed reproduces a sequence on any device.
//
// Thread safety: one sampler per request (it owns the random state).
#ifndef KVC_COMPRESSOR_GENERATE_SAMPLER_H_
#define KVC_COMPRESSOR_GENERATE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

#include <torch/types.h>

namespace kvc {

struct SamplerParams {
  double temperature = 0.0;  // 0: greedy; otherwise > 0
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // in (0, 1]; 1: off
  uint64_t seed = 0;
};

class TokenSampler {
 public:
  // `vocab_limit`: ids at or past it are never chosen (padding rows of the embedding). Parameters must be
  // valid (the generator validates requests).
  TokenSampler(const SamplerParams& params, int64_t vocab_limit);

  // logits: [vocab] float32 on the CPU. Greedy: the highest logit, ties to the lowest id (torch's argmax, as
  // GenerateGreedy). Sampling: logits / temperature, keep the top_k best (ties to lower ids), softmax, keep
  // the smallest prefix of the sorted distribution whose mass reaches top_p, draw from what remains. NaN
  // logits count as -inf.
  int64_t Next(const torch::Tensor& logits);

 private:
  int64_t Sample(const torch::Tensor& logits);

  SamplerParams params_;
  int64_t vocab_limit_;
  std::mt19937_64 rng_;
  // Scratch reused between steps, to keep per-token allocations out of the decode loop.
  std::vector<float> values_;
  std::vector<int32_t> order_;
  std::vector<double> weights_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_GENERATE_SAMPLER_H_
