// Methods that prefill the whole context with a full cache (or take a copy of the prefilled one), then keep
// the top-k entries per layer and KV head by a score (StreamingLLM, KNorm, random), as kvpress's ScorerPress
// does. Keys stay at their original positions, so decoding continues at the original end of the context.
#ifndef KVC_COMPRESSOR_METHODS_SCORED_METHOD_H_
#define KVC_COMPRESSOR_METHODS_SCORED_METHOD_H_

#include "compressor/methods/method_base.h"

namespace kvc {

class ScoredMethod : public MethodBase {
 public:
  bool query_aware() const override { return false; }
  absl::StatusOr<CompressionResult> DoCompress(const CompressionInput& in) const override;

 protected:
  ScoredMethod(CompressionSpec spec, int64_t chunk) : MethodBase(std::move(spec)), chunk_(chunk) {}
  // Scores [kv_heads, n] of layer `layer` (higher = keep); `k` is how many will be kept.
  virtual torch::Tensor Score(const KvCache& cache, int64_t layer, int64_t k) const = 0;

 private:
  int64_t chunk_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_METHODS_SCORED_METHOD_H_
