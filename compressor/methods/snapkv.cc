// snapkv: the observation window (the last `window` prefilled tokens; with a query, the query falls inside
// it) votes with its float32 attention over the earlier keys; votes are pooled, averaged over each GQA
// group, and the top-k keys per KV head are kept. The window's own context tokens are always kept; the
// query's KV is dropped (the generator feeds the suffix again).
//
// A prefilled context holds keys and values but not the queries of its own tokens, so only the suffix's
// rows can vote: the last min(window, suffix) of them, over the same entries as without a prefill. With a
// window inside the suffix that is exactly what a prefill from the token ids keeps; a wider window loses
// its context rows' votes (its context tokens are still kept), and without a suffix nothing can vote.
#include <limits>

#include "compressor/methods/method_base.h"
#include "compressor/methods/scoring.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

struct SnapKvOptions {
  int64_t chunk = kAutoPrefillChunk;
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
    const int64_t C = ContextLength(in), Q = static_cast<int64_t>(in.suffix.size());
    const int64_t total = C + Q;
    const int64_t w = o_.window < 0 ? Q : o_.window;
    if (w >= total) {
      return absl::OutOfRangeError(absl::StrCat("options.window: ", w, " must be smaller than the ", total,
                                                " prefilled tokens"));
    }
    const bool prefilled = in.prefilled != nullptr;
    const int64_t rows = prefilled ? std::min(w, Q) : w;  // the window's rows whose queries vote
    if (rows == 0) {
      return absl::InvalidArgumentError(
          "query: empty, but snapkv on a prefilled context votes with the query's rows (the context's own "
          "queries are not in its KV)");
    }
    KVC_ASSIGN_OR_RETURN(int64_t k, Budget(in, C));
    CompressionStats stats;
    stats.tokens_in = C;
    // Entries [0, head) are voted on; the window's context tokens [head, C) are always kept.
    const int64_t head = std::min(C, total - w);
    // The pass that captures the voting queries runs after everything before it is in the cache: the window
    // (context tail + query) after the rest of the context prefilled in chunks, or the query after a copy
    // of the prefilled context.
    KvCache cache = in.model->NewCache();
    std::vector<int64_t> window_ids;
    int64_t window_start = head;
    if (prefilled) {
      KVC_ASSIGN_OR_RETURN(cache, ContextCache(in, o_.chunk, &stats));
      window_start = C;
    } else {
      std::vector<int64_t> first(in.context.begin(), in.context.begin() + head);
      window_ids.assign(in.context.begin() + head, in.context.end());
      KVC_RETURN_IF_ERROR(Prefill(in, first, 0, o_.chunk, cache, &stats));
    }
    window_ids.insert(window_ids.end(), in.suffix.begin(), in.suffix.end());
    KVC_RETURN_IF_ERROR(CheckCancelled(in));
    torch::Tensor ids = torch::tensor(window_ids, torch::kInt64);
    ForwardOptions fo;
    fo.capture_queries = rows;
    KVC_ASSIGN_OR_RETURN(ForwardOutput out,
                         in.model->Forward(ids, torch::arange(window_start, total, torch::kInt64), cache, fo));
    stats.peak_cache_entries = cache.peak_length();
    std::vector<torch::Tensor> kept;
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      torch::Tensor attn = WindowAttention(out.queries[l], cache.Keys(l));  // [H, rows, total]
      // Only context entries are voted on: with a window inside the query, the query's earlier entries
      // precede the window too, but their KV is dropped.
      torch::Tensor votes = attn.narrow(2, 0, head);
      votes = o_.sum_rows ? votes.sum(1) : votes.mean(1);                  // [H, head]
      if (o_.kernel > 1) {
        votes = o_.max_pool ? torch::max_pool1d(votes.unsqueeze(0), o_.kernel, 1, o_.kernel / 2).squeeze(0)
                            : torch::avg_pool1d(votes.unsqueeze(0), o_.kernel, 1, o_.kernel / 2).squeeze(0);
      }
      torch::Tensor scores = GroupMean(votes, cache.shape().kv_heads);     // [Hkv, head]
      // Context tokens inside the window are always kept, as kvpress pads them with max + 1.
      if (head < C) {
        torch::Tensor pad = torch::full({scores.size(0), C - head}, scores.max().item<float>() + 1, scores.options());
        scores = torch::cat({scores, pad}, 1);
      }
      kept.push_back(SelectTopK(scores, k, in.protected_prefix));
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
  KVC_ASSIGN_OR_RETURN(s.chunk, o.Int("chunk_tokens", kAutoPrefillChunk, 1, 1 << 20));
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
