// snapkv: the observation window (the last `window` prefilled tokens; with a query, the query falls inside
// it) votes with its float32 attention over the earlier keys; votes are pooled, averaged over each GQA
// group, and the top-k keys per KV head are kept. The window's own context tokens are always kept; the
// query's KV is dropped (the generator feeds the suffix again).
#include <limits>

#include "compressor/methods/method_base.h"
#include "compressor/methods/scoring.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

struct SnapKvOptions {
  int64_t chunk = 512;
  int64_t window = 64;  // -1: exactly the query
  int64_t kernel = 5;
  bool max_pool = false;
  bool sum_rows = false;
};

class SnapKv : public MethodBase {
 public:
  SnapKv(CompressionSpec spec, SnapKvOptions o) : MethodBase(std::move(spec)), o_(o) {}
  bool query_aware() const override { return o_.window < 0; }

  absl::StatusOr<CompressionResult> DoCompress(const CompressionInput& in) const override {
    const int64_t C = static_cast<int64_t>(in.context.size()), Q = static_cast<int64_t>(in.suffix.size());
    const int64_t total = C + Q;
    const int64_t w = o_.window < 0 ? Q : o_.window;
    if (w >= total) {
      return absl::OutOfRangeError(absl::StrCat("options.window: ", w, " must be smaller than the ", total,
                                                " prefilled tokens"));
    }
    KVC_ASSIGN_OR_RETURN(int64_t k, Budget(in, C));
    CompressionStats stats;
    stats.tokens_in = C;
    KvCache cache = in.model->NewCache();
    // Everything before the window in chunks, then the window (context tail + query) in one pass that
    // captures its queries.
    const int64_t head = std::min(C, total - w);
    std::vector<int64_t> first(in.context.begin(), in.context.begin() + head);
    std::vector<int64_t> window_ids(in.context.begin() + head, in.context.end());
    window_ids.insert(window_ids.end(), in.suffix.begin(), in.suffix.end());
    KVC_RETURN_IF_ERROR(Prefill(in, first, 0, o_.chunk, cache, &stats));
    KVC_RETURN_IF_ERROR(CheckCancelled(in));
    torch::Tensor ids = torch::tensor(window_ids, torch::kInt64);
    ForwardOptions fo;
    fo.capture_queries = w;
    KVC_ASSIGN_OR_RETURN(ForwardOutput out,
                         in.model->Forward(ids, torch::arange(head, total, torch::kInt64), cache, fo));
    stats.peak_cache_entries = cache.peak_length();
      std::vector<torch::Tensor> kept;
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      torch::Tensor attn = WindowAttention(out.queries[l], cache.Keys(l));  // [H, w, total]
      torch::Tensor votes = attn.narrow(2, 0, total - w);
      votes = o_.sum_rows ? votes.sum(1) : votes.mean(1);                  // [H, total - w]
      if (o_.kernel > 1) {
        votes = o_.max_pool ? torch::max_pool1d(votes.unsqueeze(0), o_.kernel, 1, o_.kernel / 2).squeeze(0)
                            : torch::avg_pool1d(votes.unsqueeze(0), o_.kernel, 1, o_.kernel / 2).squeeze(0);
      }
      torch::Tensor scores = GroupMean(votes, cache.shape().kv_heads);     // [Hkv, total - w]
      // Context tokens inside the window are always kept, as kvpress pads them with max + 1.
      if (head < C) {
        torch::Tensor pad = torch::full({scores.size(0), C - head}, scores.max().item<float>() + 1, scores.options());
        scores = torch::cat({scores, pad}, 1);
      }
      kept.push_back(SelectTopK(scores.cpu(), k, in.protected_prefix));
    }
    cache.Truncate(C);  // the query's KV
    for (int64_t l = 0; l < cache.num_layers(); ++l) GatherLayer(cache, l, kept[l], false, in.model->rope());
    cache.set_next_position(C);
    return Finish(std::move(cache), std::move(stats));
  }

 private:
  SnapKvOptions o_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeSnapKv(const CompressionSpec& spec) {
  KVC_ASSIGN_OR_RETURN(MethodOptions o,
                       MethodOptions::Parse(spec.method, spec.options, {"chunk_tokens", "window", "kernel", "pooling", "rows"}));
  SnapKvOptions s;
  KVC_ASSIGN_OR_RETURN(s.chunk, o.Int("chunk_tokens", 512, 1, 1 << 20));
  if (o.Has("window") && o.Raw("window") == "query") {
    s.window = -1;
  } else {
    KVC_ASSIGN_OR_RETURN(s.window, o.Int("window", 64, 1, 1 << 20));
  }
  KVC_ASSIGN_OR_RETURN(s.kernel, o.Int("kernel", 5, 1, 1025));
  if (s.kernel % 2 == 0) return absl::InvalidArgumentError(absl::StrCat("options.kernel: ", s.kernel, " must be odd"));
  KVC_ASSIGN_OR_RETURN(std::string pooling, o.Choice("pooling", "avg", {"avg", "max"}));
  KVC_ASSIGN_OR_RETURN(std::string rows, o.Choice("rows", "mean", {"mean", "sum"}));
  s.max_pool = pooling == "max";
  s.sum_rows = rows == "sum";
  return std::unique_ptr<CompressionMethod>(new SnapKv(spec, s));
}

}  // namespace kvc
