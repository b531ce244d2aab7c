// knorm: keep the keys with the lowest L2 norm (low-norm keys draw the most attention).
#include "compressor/methods/scored_method.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

class Knorm : public ScoredMethod {
 public:
  Knorm(CompressionSpec spec, int64_t chunk) : ScoredMethod(std::move(spec), chunk) {}

 protected:
  torch::Tensor Score(const KvCache& cache, int64_t layer, int64_t) const override {
    return -torch::linalg_vector_norm(cache.Keys(layer).to(torch::kFloat32), 2, {-1});
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeKnorm(const CompressionSpec& spec) {
  KVC_ASSIGN_OR_RETURN(MethodOptions o, MethodOptions::Parse(spec.method, spec.options, {"chunk_tokens"}));
  KVC_ASSIGN_OR_RETURN(int64_t chunk, o.Int("chunk_tokens", kAutoPrefillChunk, 1, 1 << 20));
  return std::unique_ptr<CompressionMethod>(new Knorm(spec, chunk));
}

}  // namespace kvc
