// truncate: keep the head and the tail of the context and drop the middle before prefill, so it works for
// contexts past the model's window (the kept tokens get contiguous positions). A prefilled context was
// computed whole: its head and tail entries are kept and the tail's keys re-rotated next to the head, so
// unlike a prefill of the kept tokens alone, the tail's deeper layers have seen the middle.
#include "compressor/methods/method_base.h"
#include "compressor/methods/scoring.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

class TruncateMethod : public MethodBase {
 public:
  TruncateMethod(CompressionSpec spec, int64_t chunk) : MethodBase(std::move(spec)), chunk_(chunk) {}
  bool query_aware() const override { return false; }

  absl::StatusOr<CompressionResult> DoCompress(const CompressionInput& in) const override {
    const int64_t n = ContextLength(in);
    KVC_ASSIGN_OR_RETURN(int64_t k, Budget(in, n));
    int64_t head = std::max(in.protected_prefix, k / 2);
    int64_t tail = k - head;
    CompressionStats stats;
    stats.tokens_in = n;
    torch::Tensor original = torch::cat({torch::arange(head, torch::kInt64), torch::arange(n - tail, n, torch::kInt64)});
    KvCache cache = in.model->NewCache();
    if (in.prefilled != nullptr) {
      KVC_ASSIGN_OR_RETURN(cache, ContextCache(in, chunk_, &stats));
      torch::Tensor idx = original.unsqueeze(0).expand({cache.shape().kv_heads, k});
      for (int64_t l = 0; l < cache.num_layers(); ++l) GatherLayer(cache, l, idx, /*rerotate=*/true, in.model->rope());
    } else {
      std::vector<int64_t> ids(in.context.begin(), in.context.begin() + head);
      ids.insert(ids.end(), in.context.end() - tail, in.context.end());
      KVC_RETURN_IF_ERROR(Prefill(in, ids, 0, chunk_, cache, &stats));
      // Record where the kept tokens came from in the original context.
      cache.SetPositions(0, original);
    }
    cache.set_next_position(k);
    cache.set_key_rotation(KeyRotation::kCompacted);
    return Finish(std::move(cache), std::move(stats));
  }

 private:
  int64_t chunk_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeTruncate(const CompressionSpec& spec) {
  KVC_ASSIGN_OR_RETURN(MethodOptions o, MethodOptions::Parse(spec.method, spec.options, {"chunk_tokens"}));
  KVC_ASSIGN_OR_RETURN(int64_t chunk, o.Int("chunk_tokens", kAutoPrefillChunk, 1, 1 << 20));
  return std::unique_ptr<CompressionMethod>(new TruncateMethod(spec, chunk));
}

}  // namespace kvc
