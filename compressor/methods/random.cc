// random: uniformly random entries per layer and KV head, reproducible through `seed`.
#include "compressor/methods/scored_method.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

class RandomMethod : public ScoredMethod {
 public:
  RandomMethod(CompressionSpec spec, int64_t chunk, int64_t seed) : ScoredMethod(std::move(spec), chunk), seed_(seed) {}

 protected:
  torch::Tensor Score(const KvCache& cache, int64_t layer, int64_t) const override {
    // One generator per layer, so results do not depend on the order layers are scored in.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed_) * 1000003u + layer);
    return torch::rand({cache.shape().kv_heads, cache.length(layer)}, gen, torch::TensorOptions().dtype(torch::kFloat32));
  }

 private:
  int64_t seed_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeRandom(const CompressionSpec& spec) {
  KVC_ASSIGN_OR_RETURN(MethodOptions o, MethodOptions::Parse(spec.method, spec.options, {"chunk_tokens", "seed"}));
  KVC_ASSIGN_OR_RETURN(int64_t chunk, o.Int("chunk_tokens", kAutoPrefillChunk, 1, 1 << 20));
  KVC_ASSIGN_OR_RETURN(int64_t seed, o.Int("seed", 0, 0, int64_t{1} << 62));
  return std::unique_ptr<CompressionMethod>(new RandomMethod(spec, chunk, seed));
}

}  // namespace kvc
