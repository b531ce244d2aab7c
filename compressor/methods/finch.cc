// finch (the default): chunked, query-guided prefill. For each chunk of the context the model runs on
// [kept cache][chunk][query]; the query rows' float32 attention over (kept + chunk) keys scores them; the
// top-k survive, the query's KV is dropped, and the kept keys are re-rotated to contiguous positions, where
// the next chunk continues. The cache therefore never holds more than budget + chunk + query entries, and
// documents longer than the model window work. DESIGN §4 has the exact semantics; with chunk_tokens >= the
// context, granularity=kv_head, normalize, rerotate and keep_query=on it keeps what kvpress's FinchPress
// keeps. A prefilled context is scored as one chunk (chunk_tokens does not apply): the query runs on top of a
// copy of it.
#include <chrono>
#include <cmath>
#include <limits>

#include "compressor/methods/method_base.h"
#include "compressor/methods/phase_span.h"
#include "compressor/methods/scoring.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

struct FinchOptions {
  int64_t chunk = 2048;
  bool per_layer = false;  // granularity=layer: one index set per layer, heads summed
  bool normalize = true;
  bool rerotate = true;
  bool keep_query = false;
};

class Finch : public MethodBase {
 public:
  Finch(CompressionSpec spec, FinchOptions o) : MethodBase(std::move(spec)), o_(o) {}
  bool query_aware() const override { return true; }

  absl::StatusOr<CompressionResult> DoCompress(const CompressionInput& in) const override {
    const LlamaModel& model = *in.model;
    const int64_t C = ContextLength(in), Q = static_cast<int64_t>(in.suffix.size());
    KVC_ASSIGN_OR_RETURN(const int64_t chunk, QueryGuidedChunk(in, o_.chunk));
    int64_t k_ctx = 0;
    if (o_.keep_query) {
      KVC_ASSIGN_OR_RETURN(int64_t total, Budget(in, C + Q));
      if (total <= Q) {
        return absl::OutOfRangeError(absl::StrCat("ratio: keeping ", total, " of ", C + Q,
                                                  " tokens leaves no room for the context next to the query"));
      }
      k_ctx = total - Q;
    } else {
      KVC_ASSIGN_OR_RETURN(k_ctx, Budget(in, C));
    }
    CompressionStats stats;
    stats.tokens_in = C;
    KvCache cache = model.NewCache();
    torch::Tensor context = torch::tensor(in.context, torch::kInt64);
    torch::Tensor query = torch::tensor(in.suffix, torch::kInt64);
    // Positions are made on the model's device: a copy from pageable host memory would wait for the GPU.
    const auto on_device = torch::TensorOptions().dtype(torch::kInt64).device(model.device());
    int64_t next = 0;  // rotary position where the next chunk starts
    for (int64_t start = 0; start < C; start += chunk) {
      KVC_RETURN_IF_ERROR(CheckCancelled(in));
      auto t0 = std::chrono::steady_clock::now();
      const int64_t len = std::min(chunk, C - start);
      const bool last = start + len == C;
      PhaseSpan phase("finch.chunk");
      if (in.prefilled != nullptr) {
        KVC_ASSIGN_OR_RETURN(cache, ContextCache(in, chunk, /*stats=*/nullptr));
      } else {
        const int64_t kept_before = cache.length();
        KVC_RETURN_IF_ERROR(
            model.Forward(context.narrow(0, start, len), torch::arange(next, next + len, on_device), cache).status());
        cache.SetPositions(kept_before, torch::arange(start, start + len, on_device));
      }
      next += len;
      const int64_t scored = cache.length();  // kept + chunk
      phase.Next("finch.query");
      ForwardOptions fo;
      fo.capture_queries = Q;
      KVC_ASSIGN_OR_RETURN(ForwardOutput out,
                           model.Forward(query, torch::arange(next, next + Q, on_device), cache, fo));
      cache.SetPositions(scored, torch::arange(C, C + Q, on_device));
      int64_t k = KeptSoFar(k_ctx, start + len, C);
      k = std::max(k, std::min(in.protected_prefix, scored));
      const bool query_stays = last && o_.keep_query;
      phase.Next("finch.select");
      std::vector<torch::Tensor> kept;
      for (int64_t l = 0; l < cache.num_layers(); ++l) {
        kept.push_back(Select(out.queries[l], cache.Keys(l), scored, k, query_stays, in));
      }
      phase.Next("finch.gather");
      if (!query_stays) cache.Truncate(scored);
      for (int64_t l = 0; l < cache.num_layers(); ++l) GatherLayer(cache, l, kept[l], o_.rerotate, model.rope());
      next = o_.rerotate ? cache.length() : start + len;
      stats.chunk_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    cache.set_next_position(o_.rerotate ? cache.length() : (o_.keep_query ? C + Q : C));
    if (o_.rerotate) cache.set_key_rotation(KeyRotation::kCompacted);
    return Finish(std::move(cache), std::move(stats));
  }

 private:
  // Indices to keep among the `scored` cache entries (plus the Q query entries when query_stays).
  torch::Tensor Select(const torch::Tensor& queries, const torch::Tensor& keys, int64_t scored, int64_t k,
                       bool query_stays, const CompressionInput& in) const {
    const int64_t Q = queries.size(1), total = keys.size(1), Hkv = keys.size(0);
    torch::Tensor attn = WindowAttention(queries, keys);  // [H, Q, total]
    if (o_.normalize) {
      // Row i sees total - Q + i + 1 keys; scaling by total - Q + i evens out long and short rows (kvpress's rule).
      torch::Tensor rows = torch::arange(total - Q, total, attn.options()).view({1, Q, 1});
      attn = attn * rows;
    }
    torch::Tensor votes = attn.narrow(2, 0, scored).mean(1);  // [H, scored]
    torch::Tensor scores = o_.per_layer ? votes.sum(0, /*keepdim=*/true).expand({Hkv, scored}).contiguous()
                                        : GroupMean(votes, Hkv);
    if (query_stays) {
      torch::Tensor pad = torch::full({Hkv, Q}, scores.max().item<float>() + 1, scores.options());
      return SelectTopK(torch::cat({scores, pad}, 1), k + Q, in.protected_prefix);
    }
    return SelectTopK(scores, k, in.protected_prefix);
  }

  FinchOptions o_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeFinch(const CompressionSpec& spec) {
  KVC_ASSIGN_OR_RETURN(MethodOptions o,
                       MethodOptions::Parse(spec.method, spec.options,
                                            {"chunk_tokens", "granularity", "normalize", "rerotate", "keep_query"}));
  FinchOptions f;
  KVC_ASSIGN_OR_RETURN(f.chunk, o.Int("chunk_tokens", 2048, 1, int64_t{1} << 24));
  KVC_ASSIGN_OR_RETURN(std::string granularity, o.Choice("granularity", "kv_head", {"kv_head", "layer"}));
  f.per_layer = granularity == "layer";
  KVC_ASSIGN_OR_RETURN(f.normalize, o.Bool("normalize", true));
  KVC_ASSIGN_OR_RETURN(f.rerotate, o.Bool("rerotate", true));
  KVC_ASSIGN_OR_RETURN(f.keep_query, o.Bool("keep_query", false));
  return std::unique_ptr<CompressionMethod>(new Finch(spec, f));
}

}  // namespace kvc
