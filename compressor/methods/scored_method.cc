#include "compressor/methods/scored_method.h"

#include "compressor/methods/scoring.h"
#include "compressor/util/status_macros.h"

namespace kvc {

absl::StatusOr<CompressionResult> ScoredMethod::DoCompress(const CompressionInput& in) const {
  const int64_t n = ContextLength(in);
  KVC_ASSIGN_OR_RETURN(int64_t k, Budget(in, n));
  CompressionStats stats;
  stats.tokens_in = n;
  KVC_ASSIGN_OR_RETURN(KvCache cache, ContextCache(in, chunk_, &stats));
  stats.peak_cache_entries = cache.peak_length();
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    torch::Tensor idx = SelectTopK(Score(cache, l, k), k, in.protected_prefix);
    GatherLayer(cache, l, idx, /*rerotate=*/false, in.model->rope());
  }
  cache.set_next_position(n);
  return Finish(std::move(cache), std::move(stats));
}

}  // namespace kvc
