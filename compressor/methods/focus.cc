// focus: query-aware, span-aware selection in Finch's chunked prefill. Finch and SnapKV keep the tokens that
// the query's attention lands on, per head and per layer; on small models that attention goes mostly to
// frequent tokens (" the", ":") and a number spelled one digit per token loses some digits. focus changes
// three things and keeps Finch's loop (DESIGN §4): chunks of chunk_tokens, the suffix run on
// [kept][chunk][suffix] and dropped, the kept keys re-rotated, the kept count growing with the text seen.
//
// 1. Score = relevance, not attention mass (score=contrast). For each layer and query head, a key's mean
//    attention from the suffix rows is divided by the attention it receives anyway: the mean from doc_rows
//    rows of the chunk itself (evenly spaced; a key seen by few of them regresses to uniform attention, 1/n),
//    plus 1/n. Each head's scores are then made a distribution (sum 1), so a head that points at a few keys
//    (a retrieval head) puts its whole weight there; head_weight=peak also weighs each head by its largest
//    score. score=attention keeps the plain suffix attention: Finch's vote, with Finch's normalize option, so
//    that span=token selection=kv_head sinks=0 is Finch (a test holds them to the same indices).
// 2. Spans, not tokens. Token scores (optionally max-pooled over pool_kernel neighbours first) become span
//    scores (span_pool=max or mean over the span's tokens), and entries are ranked by span score, then by
//    word score (the mean over the word), then by order: whole spans are kept, and the one that does not fit
//    keeps its best words. span=token, word, sentence (the text's sentences and lines, cut at word starts
//    into pieces of at most span_tokens) or fixed (runs of span_tokens, as ChunkKV). Words and sentences come
//    from CompressionInput::boundaries; without them (a context given only as prefilled KV) word and
//    sentence spans fall back to fixed runs of span_tokens.
// 3. One selection. selection=shared sums the scores of every layer and head and keeps the same tokens in
//    all of them, so the cache reads as one excerpt of the document; layer keeps one set per layer, kv_head
//    one per KV head and layer (Finch's default).
// 4. Budgets by head and layer. head_budget=adaptive (selection=kv_head; AdaKV): the heads of a layer share
//    heads * k entries, each first getting head_floor% of k, the rest going to the best remaining entries of
//    any head by span score. layer_budget=pyramid (PyramidKV): layer l's budget falls linearly from
//    (200 - pyramid_last)% of k to pyramid_last% over the layers; under selection=shared layer l keeps the
//    top of the one ranking. head_budget=global (selection=kv_head; as KVzip) lets the heads of every layer
//    share layers * heads * k entries the same way, so a layer's heads may keep more or less than k. These
//    leave a ragged cache (kv_cache.h). In the loop every layer keeps as many
//    slots as the largest budget, padding the rest, so that each chunk lands at the same slots (and rotary
//    positions) in every layer; at the end each head's entries move to its first slots and a layer keeps
//    only as many slots as its fullest head.
// Protection: the protected prefix and the first `sinks` context tokens are always kept; with a ratio the
// prefix is outside it (kept = prefix + (C - prefix) / ratio), so a long system prompt does not starve the
// document at high ratios; prefix_in_budget=true counts it as the other methods do (kept = C / ratio).
// target_tokens counts every kept token, the prefix included.
// A prefilled context is one chunk, and since its rows' queries are gone, score=contrast uses the suffix's
// attention alone there (as score=attention).
//
// novelty: the same loop, spans and selection with no query at all, for caches made before any question
// (Precompute QUERY_AGNOSTIC). A document that answers questions nobody has asked yet is mostly what its
// own bulk predicts, plus the facts that depart from it (a pass key in a license text, a figure in an essay).
// What the rest of the document can stand in for is what a reader of the kept cache can best do without (the
// idea behind KVzip's reconstruction score), so novelty keeps the spans least like the document around them:
// each token's hidden state after the middle layer (the layers where a small model's representations are
// most about meaning), centred on the chunk's mean and unit-normalized; a span's score is the cosine
// distance of its tokens' mean direction from the chunk's mean direction, and every token of the span gets
// it. Distances are on one scale in every chunk, so kept entries keep the score they were chosen with. One
// ranking for every layer and head. window=N measures each token against the mean of the N tokens around it
// instead of the chunk's (it discounts slow drifts of the hidden state along the text); score=token gives
// each token its own distance and lets span_pool make the span's score.
// It needs the context's hidden states, so it does not select from stored caches (CompressionInput::prefilled).
//
// recall: the same loop with no query either, scoring what the model needs to read the chunk back (KVzip's
// reconstruction score). After a chunk is prefilled its tokens are fed again right after it, and an entry's
// score in a KV head is the most attention any replayed token of the head's query group gives it, with the
// softmax over the first `sinks` slots, the chunk and the replay (so that the scores of different chunks are
// on one scale and kept entries keep theirs); the replay's KV is dropped. A fact is read back by attending to
// it, while what the text itself predicts gets little. Defaults as KVzip's: span=token, selection=kv_head,
// head_budget=global (the heads that copy take most of the budget) and rerotate=false (entries keep their
// positions: with budgets that differ by head, compacting would give each head positions of its own). The
// replay is a second forward pass over every chunk. Like novelty it does not select from stored caches.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "compressor/methods/method_base.h"
#include "compressor/methods/phase_span.h"
#include "compressor/methods/scoring.h"
#include "compressor/tokenizer/text_boundaries.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

enum class Span { kToken, kWord, kSentence, kFixed };
enum class Selection { kShared, kLayer, kKvHead };

struct FocusOptions {
  int64_t chunk = 2048;
  bool contrast = true;
  int64_t doc_rows = 128;
  Span span = Span::kSentence;
  int64_t span_tokens = 32;
  bool span_max = true;  // span_pool=max (else mean)
  int64_t pool_kernel = 0;
  Selection selection = Selection::kShared;
  int64_t sinks = 4;
  bool peak_weight = false;
  bool normalize = false;
  bool rerotate = true;
  bool prefix_in_budget = false;
  bool pyramid = false;        // layer_budget=pyramid
  int64_t pyramid_last = 50;   // the last layer's share of the mean budget, percent
  bool adaptive = false;       // head_budget=adaptive
  int64_t head_floor = 20;     // percent of the per-head budget that every head keeps at least
  int64_t head_cap = 0;        // percent of the per-head budget that no head exceeds (0: no cap)
  bool global = false;         // head_budget=global: the heads of every layer share one budget
  bool novelty = false;        // the method "novelty": scores from the document alone, no query
  bool novelty_tokens = false;  // novelty score=token: each token's own distance, pooled over its span
  int64_t novelty_window = 0;   // novelty window: tokens around each one that it is compared with (0: the chunk)
  bool recall = false;          // the method "recall": scores from replaying the chunk, no query
};

// Kept slots of one layer: idx [R, slots] ascending, then padding; valid [R, slots] bool, or undefined when no
// slot is padding.
struct Kept {
  torch::Tensor idx, valid;
};

// Per row of `order` ([R, n], slot indices by priority), the first counts[r] ([R] int64) as a Kept of `slots`
// columns, ascending, the rest padding.
Kept FromOrder(const torch::Tensor& order, const torch::Tensor& counts, int64_t slots) {
  const int64_t n = order.size(1);
  torch::Tensor valid = torch::arange(slots, order.options()).unsqueeze(0) < counts.unsqueeze(1);
  torch::Tensor idx = std::get<0>(torch::where(valid, order.narrow(1, 0, slots), n).sort(1));
  idx = torch::where(valid, idx, 0);
  return Kept{idx, valid.all().item<bool>() ? torch::Tensor() : valid};
}

// Span and word ids of every context position, ascending.
struct SpanIds {
  torch::Tensor span;  // [C] int64
  torch::Tensor word;  // [C] int64
};

SpanIds MakeSpanIds(const FocusOptions& o, const std::vector<uint8_t>& boundaries, int64_t C, torch::Device device) {
  std::vector<int64_t> span(C), word(C);
  const bool text = static_cast<int64_t>(boundaries.size()) == C;
  int64_t w = -1, s = -1, span_len = 0;
  for (int64_t i = 0; i < C; ++i) {
    const uint8_t b = text ? boundaries[i] : (kWordStart | kSentenceStart);
    if (i == 0 || (b & kWordStart) != 0) ++w;
    word[i] = text ? w : i;
    bool starts = true;
    const bool needs_text = o.span == Span::kWord || o.span == Span::kSentence;
    switch (needs_text && !text ? Span::kFixed : o.span) {
      case Span::kToken: starts = true; break;
      case Span::kWord: starts = i == 0 || (b & kWordStart) != 0; break;
      case Span::kFixed: starts = i % o.span_tokens == 0; break;
      case Span::kSentence:
        // A sentence longer than span_tokens is cut at the next word start, or anywhere past twice that.
        starts = i == 0 || (b & kSentenceStart) != 0 || (span_len >= o.span_tokens && (b & kWordStart) != 0) ||
                 span_len >= 2 * o.span_tokens;
        break;
    }
    if (starts) {
      ++s;
      span_len = 0;
    }
    span[i] = s;
    ++span_len;
  }
  auto opts = torch::TensorOptions().dtype(torch::kInt64);
  return {torch::tensor(span, opts).to(device), torch::tensor(word, opts).to(device)};
}

// S rows of a chunk of len, evenly spaced from the first to the last, ascending and distinct.
std::vector<int64_t> SampledRows(int64_t S, int64_t len) {
  std::vector<int64_t> rows(S);
  for (int64_t i = 0; i < S; ++i) {
    rows[i] = S == 1 ? 0 : std::llround(static_cast<double>(i) * static_cast<double>(len - 1) / static_cast<double>(S - 1));
  }
  return rows;
}

// The sampled document rows of a chunk: each row (a cache index) sees keys 0..row.
struct DocRows {
  torch::Tensor hidden;   // [S, scored] bool: key past the row
  torch::Tensor seen_by;  // [scored] float32: how many rows see each key
};

DocRows MakeDocRows(const torch::Tensor& rows, int64_t scored) {
  torch::Tensor visible = torch::arange(scored, rows.options()).unsqueeze(0) <= rows.unsqueeze(1);
  return {visible.logical_not(), visible.sum(0).to(torch::kFloat32)};
}

// Mean attention each of the `scored` keys receives from the sampled rows, whose queries are [H, S, D].
// Returns [H, scored]; a key seen by few rows leans to uniform attention 1/n. The GQA groups are matched by
// a reshape rather than by copying the keys per query head.
torch::Tensor DocAttention(const torch::Tensor& queries, const torch::Tensor& keys, const DocRows& rows,
                           int64_t scored, const torch::Tensor& valid) {
  const int64_t H = queries.size(0), S = queries.size(1), D = queries.size(2), Hkv = keys.size(0);
  torch::Tensor q = queries.to(torch::kFloat32).reshape({Hkv, (H / Hkv) * S, D});
  torch::Tensor k = keys.narrow(1, 0, scored).to(torch::kFloat32);
  torch::Tensor logits = torch::matmul(q, k.transpose(1, 2)).view({H, S, scored}).mul_(1.0 / std::sqrt(double(D)));
  torch::Tensor hidden = rows.hidden;
  if (valid.defined()) {
    hidden = hidden | valid.narrow(1, 0, scored).logical_not().repeat_interleave(H / Hkv, 0).unsqueeze(1);
  }
  logits.masked_fill_(hidden, -std::numeric_limits<float>::infinity());
  torch::Tensor received = torch::softmax(logits, -1).sum(1);  // [H, scored]
  const double uniform = 1.0 / static_cast<double>(scored);
  return (received + uniform) / (rows.seen_by + 1);
}

class Focus : public MethodBase {
 public:
  Focus(CompressionSpec spec, FocusOptions o) : MethodBase(std::move(spec)), o_(o) {}
  bool query_aware() const override { return !o_.novelty && !o_.recall; }

  absl::StatusOr<CompressionResult> DoCompress(const CompressionInput& in) const override {
    if ((o_.novelty || o_.recall) && in.prefilled != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "method ", spec_.method,
          o_.novelty ? " scores the context's hidden states as it prefills them, which stored caches do not hold"
                     : " replays the context's text, which stored caches do not hold",
          ": compress the documents' text instead of document_cache_ids"));
    }
    const LlamaModel& model = *in.model;
    const int64_t C = ContextLength(in), Q = static_cast<int64_t>(in.suffix.size());
    KVC_ASSIGN_OR_RETURN(const int64_t chunk, QueryGuidedChunk(in, o_.chunk));
    KVC_ASSIGN_OR_RETURN(int64_t k_ctx, KeptCount(in, C));
    const int64_t protect = std::max(in.protected_prefix, std::min(o_.sinks, C));
    const SpanIds ids = MakeSpanIds(o_, in.boundaries, C, model.device());

    CompressionStats stats;
    stats.tokens_in = C;
    KvCache cache = model.NewCache();
    torch::Tensor context = torch::tensor(in.context, torch::kInt64);
    torch::Tensor query = torch::tensor(in.suffix, torch::kInt64);
    const auto on_device = torch::TensorOptions().dtype(torch::kInt64).device(model.device());
    int64_t next = 0;
    std::vector<torch::Tensor> carried;  // novelty, recall: per layer [Hkv, kept slots] the kept entries' scores
    for (int64_t start = 0; start < C; start += chunk) {
      KVC_RETURN_IF_ERROR(CheckCancelled(in));
      auto t0 = std::chrono::steady_clock::now();
      const int64_t len = std::min(chunk, C - start);
      const int64_t kept_before = cache.length();
      std::vector<torch::Tensor> doc_queries;
      torch::Tensor doc_rows, chunk_scores;
      std::vector<torch::Tensor> recall_scores;  // recall: per layer [Hkv, len]
      PhaseSpan phase("focus.chunk");
      if (in.prefilled != nullptr) {
        KVC_ASSIGN_OR_RETURN(cache, ContextCache(in, chunk, /*stats=*/nullptr));
      } else {
        ForwardOptions chunk_fo;
        const bool sample = o_.contrast && o_.doc_rows > 0;
        if (sample) chunk_fo.capture_rows = SampledRows(std::min(o_.doc_rows, len), len);
        if (o_.novelty) chunk_fo.capture_hidden_after = NoveltyLayer(model);
        KVC_ASSIGN_OR_RETURN(ForwardOutput chunk_out,
                             model.Forward(context.narrow(0, start, len), torch::arange(next, next + len, on_device),
                                           cache, chunk_fo));
        cache.SetPositions(kept_before, torch::arange(start, start + len, on_device));
        if (o_.novelty) {
          chunk_scores =
              NoveltyScores(chunk_out.hidden, ids.span.narrow(0, start, len), o_.novelty_tokens, o_.novelty_window);
        }
        if (o_.recall) {
          KVC_ASSIGN_OR_RETURN(recall_scores, RecallScores(model, cache, context.narrow(0, start, len),
                                                           next + len, kept_before, std::min(o_.sinks, kept_before)));
        }
        if (sample) {
          doc_queries = std::move(chunk_out.queries);
          doc_rows = torch::tensor(chunk_fo.capture_rows, torch::kInt64).to(model.device()) + kept_before;
        }
      }
      next += len;
      const int64_t scored = cache.length();
      int64_t k = KeptSoFar(k_ctx, start + len, C);
      k = std::min(std::max(k, std::min(protect, scored)), scored);
      std::vector<torch::Tensor> scores;  // per layer [Hkv, scored]
      if (o_.novelty || o_.recall) {
        for (int64_t l = 0; l < cache.num_layers(); ++l) {
          torch::Tensor fresh = o_.novelty ? chunk_scores.unsqueeze(0).expand({cache.shape().kv_heads, len})
                                           : recall_scores[l];
          scores.push_back(carried.empty() ? fresh : torch::cat({carried[l], fresh}, 1));
        }
      } else {
        phase.Next("focus.query");
        ForwardOptions fo;
        fo.capture_queries = Q;
        KVC_ASSIGN_OR_RETURN(ForwardOutput out,
                             model.Forward(query, torch::arange(next, next + Q, on_device), cache, fo));
        std::optional<DocRows> rows;
        if (!doc_queries.empty()) rows = MakeDocRows(doc_rows, scored);
        // The suffix's KV is still in the cache while scoring.
        for (int64_t l = 0; l < cache.num_layers(); ++l) {
          scores.push_back(LayerScores(out.queries[l], cache.Keys(l), cache.Valid(l),
                                       rows ? &doc_queries[l] : nullptr, rows, scored));
        }
        cache.Truncate(scored);
      }
      // Every layer keeps the same number of slots (padding where its budget is smaller), so that the next
      // chunk lands at the same slots, and rotary positions, in all of them.
      phase.Next("focus.select");
      std::vector<Kept> kept = Select(cache, scores, ids, k, protect);
      phase.Next("focus.gather");
      for (int64_t l = 0; l < cache.num_layers(); ++l) {
        GatherLayer(cache, l, kept[l].idx, o_.rerotate, model.rope(), kept[l].valid);
      }
      if (o_.novelty || o_.recall) {
        carried.clear();
        for (int64_t l = 0; l < cache.num_layers(); ++l) carried.push_back(scores[l].gather(1, kept[l].idx));
      }
      next = o_.rerotate ? cache.length() : start + len;
      stats.chunk_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    // Padding costs memory only up to each layer's fullest head.
    for (int64_t l = 0; l < cache.num_layers(); ++l) Compact(cache, l, model.rope());
    cache.set_next_position(o_.rerotate ? cache.length() : C);
    if (o_.rerotate) cache.set_key_rotation(KeyRotation::kCompacted);
    return Finish(std::move(cache), std::move(stats));
  }

 private:
  absl::StatusOr<int64_t> KeptCount(const CompressionInput& in, int64_t C) const {
    const int64_t doc = C - in.protected_prefix;
    if (spec_.ratio == 0 || doc == 0 || o_.prefix_in_budget) return Budget(in, C);
    KVC_ASSIGN_OR_RETURN(int64_t k, KeptTokens(spec_.ratio, 0, doc));
    return in.protected_prefix + k;
  }

  // [Hkv, scored] scores of one layer. With contrast each query head's scores sum to 1 before the GQA mean;
  // score=attention is Finch's vote exactly, so that focus with span=token and selection=kv_head is Finch.
  torch::Tensor LayerScores(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& valid,
                            const torch::Tensor* doc_queries, const std::optional<DocRows>& rows,
                            int64_t scored) const {
    const int64_t Q = queries.size(1), total = keys.size(1), Hkv = keys.size(0);
    torch::Tensor attn = WindowAttention(queries, keys, valid);  // [H, Q, total]
    if (o_.normalize) attn = attn * torch::arange(total - Q, total, attn.options()).view({1, Q, 1});
    torch::Tensor s = attn.narrow(2, 0, scored).mean(1);  // [H, scored]
    if (o_.contrast) {
      if (doc_queries != nullptr) s = s / (DocAttention(*doc_queries, keys, *rows, scored, valid) + 1.0 / scored);
      s = s / s.sum(1, /*keepdim=*/true);
    }
    if (o_.peak_weight) s = s * std::get<0>(s.max(1, /*keepdim=*/true)) * s.size(0);
    return GroupMean(s, Hkv);
  }

  // recall: replays the chunk's tokens ([len] ids) after it, at rotary positions from `at`, and returns per
  // layer [Hkv, len] the most attention each chunk entry (cache slots kept_before..+len) gets from any replay
  // row and any query head of its group, with the softmax over the `sinks` first slots, the chunk and the
  // replay itself, as KVzip scores a chunk. The replay's KV is dropped again.
  // Replay rows scored at once: bounds the attention scratch to [heads, rows, sinks + 2 * chunk].
  static constexpr int64_t kRecallRows = 512;

  absl::StatusOr<std::vector<torch::Tensor>> RecallScores(const LlamaModel& model, KvCache& cache,
                                                          const torch::Tensor& chunk, int64_t at, int64_t kept_before,
                                                          int64_t sinks) const {
    const int64_t len = chunk.size(0), scored = cache.length(), R = len;
    const auto on_device = torch::TensorOptions().dtype(torch::kInt64).device(model.device());
    ForwardOptions fo;
    fo.capture_queries = R;
    KVC_ASSIGN_OR_RETURN(ForwardOutput out, model.Forward(chunk, torch::arange(at, at + R, on_device), cache, fo));
    std::vector<torch::Tensor> scores;
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      const torch::Tensor& keys = cache.Keys(l);
      const int64_t Hkv = keys.size(0), H = out.queries[l].size(0);
      torch::Tensor sub =
          torch::cat({keys.narrow(1, 0, sinks), keys.narrow(1, kept_before, len), keys.narrow(1, scored, R)}, 1);
      torch::Tensor best;
      for (int64_t r0 = 0; r0 < R; r0 += kRecallRows) {
        const int64_t r1 = std::min(R, r0 + kRecallRows);
        torch::Tensor attn =
            WindowAttention(out.queries[l].narrow(1, r0, r1 - r0), sub.narrow(1, 0, sinks + len + r1));  // [H, rows, n]
        torch::Tensor m = std::get<0>(attn.narrow(2, sinks, len).amax(1).view({Hkv, H / Hkv, len}).max(1));
        best = best.defined() ? torch::maximum(best, m) : m;
      }
      scores.push_back(best);
    }
    cache.Truncate(scored);
    return scores;
  }

  // The hidden states novelty reads: after the middle decoder layer.
  static int64_t NoveltyLayer(const LlamaModel& model) {
    const int64_t L = model.config().num_layers;
    return std::min(L, L / 2 + 1);
  }

  // Per token of a chunk, its span's novelty: hidden [len, d] states, span [len] ascending span ids. Returns
  // [len] float32 cosine distances in [0, 2].
  static torch::Tensor NoveltyScores(const torch::Tensor& hidden, const torch::Tensor& span, bool per_token,
                                     int64_t window) {
    torch::Tensor h = hidden.to(torch::kFloat32);
    h = h - h.mean(0, /*keepdim=*/true);
    torch::Tensor u = h / h.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12);
    const int64_t n = u.size(0);
    torch::Tensor centre;  // [n, d] the reference direction at each token
    if (window > 0 && window < n) {
      // The mean over the `window` tokens around each one, from prefix sums.
      torch::Tensor cs = torch::cat({torch::zeros({1, u.size(1)}, u.options()), u.cumsum(0)});
      torch::Tensor t = torch::arange(n, torch::TensorOptions().dtype(torch::kInt64).device(u.device()));
      torch::Tensor lo = (t - window / 2).clamp(0, n - window), hi = lo + window;
      centre = cs.index_select(0, hi) - cs.index_select(0, lo);
    } else {
      centre = u.mean(0, /*keepdim=*/true).expand({n, u.size(1)});
    }
    centre = centre / centre.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12);
    if (per_token) return 1 - (u * centre).sum(-1);
    torch::Tensor local = span - span[0];
    const int64_t spans = local[-1].item<int64_t>() + 1;
    torch::Tensor dir = torch::zeros({spans, u.size(1)}, u.options()).index_add_(0, local, u);
    torch::Tensor ref = torch::zeros({spans, u.size(1)}, u.options()).index_add_(0, local, centre);
    torch::Tensor cos = (dir * ref).sum(-1) / (dir.norm(2, -1) * ref.norm(2, -1)).clamp_min(1e-12);
    return (1 - cos).index_select(0, local);
  }

  // The slots to keep in each layer, from per-layer scores [Hkv, scored] of the cache's slots; k is the mean
  // per-head budget, which layer_budget and head_budget may spread unevenly.
  std::vector<Kept> Select(const KvCache& cache, const std::vector<torch::Tensor>& scores, const SpanIds& ids,
                           int64_t k, int64_t protect) const {
    const int64_t L = cache.num_layers(), Hkv = cache.shape().kv_heads;
    const std::vector<int64_t> budget = LayerBudgets(k, L, protect, cache.length());
    int64_t slots = *std::max_element(budget.begin(), budget.end());
    auto on = torch::TensorOptions().dtype(torch::kInt64).device(cache.shape().device);
    std::vector<Kept> kept;
    if (o_.selection == Selection::kShared) {
      // One ranking for all layers: layer l keeps the top budget[l] of it, in the slots of the largest budget,
      // so that a slot holds the same token in every layer.
      torch::Tensor total = torch::stack(scores).sum(at::IntArrayRef{0, 1}).unsqueeze(0);  // [1, scored]
      torch::Tensor order = Rank(total, cache.Positions(0).narrow(0, 0, 1), torch::Tensor(), ids, protect);
      Kept all = FromOrder(order, torch::full({1}, slots, on), slots);
      torch::Tensor rank = torch::empty_like(order).scatter_(1, order, torch::arange(order.size(1), on).unsqueeze(0));
      torch::Tensor idx = all.idx.expand({Hkv, slots}).contiguous();
      for (int64_t l = 0; l < L; ++l) {
        torch::Tensor valid = (rank.gather(1, all.idx) < budget[l]).expand({Hkv, slots}).contiguous();
        kept.push_back(Kept{idx, budget[l] == slots ? torch::Tensor() : valid});
      }
      return kept;
    }
    std::vector<torch::Tensor> orders, counts;  // per layer [R, scored] and [R]
    std::vector<torch::Tensor> keys, reals;     // head_budget=global: per layer [Hkv, scored] and [Hkv]
    for (int64_t l = 0; l < L; ++l) {
      torch::Tensor valid = cache.Valid(l);
      torch::Tensor real = valid.defined() ? valid.sum(1) : torch::full({Hkv}, cache.length(l), on);  // [Hkv]
      if (o_.selection == Selection::kLayer) {
        // Heads share their slots here, so any padding is the same in every head.
        orders.push_back(Rank(scores[l].sum(0, true), cache.Positions(l).narrow(0, 0, 1),
                              valid.defined() ? valid.narrow(0, 0, 1) : valid, ids, protect));
        counts.push_back(real.narrow(0, 0, 1).clamp_max(budget[l]));
        continue;
      }
      torch::Tensor key;
      orders.push_back(Rank(scores[l], cache.Positions(l), valid, ids, protect, &key));
      if (o_.global) {
        keys.push_back(key);
        reals.push_back(real);
        continue;
      }
      counts.push_back(o_.adaptive ? HeadCounts(key, real, budget[l]) : real.clamp_max(budget[l]));
      // An adaptive head may take more than the mean budget.
      slots = std::max(slots, counts.back().max().item<int64_t>());
    }
    if (o_.global) {
      // Every layer and head of the model share L * Hkv * k entries.
      torch::Tensor all = HeadCounts(torch::cat(keys, 0), torch::cat(reals, 0), k);
      for (int64_t l = 0; l < L; ++l) counts.push_back(all.narrow(0, l * Hkv, Hkv));
      slots = std::max(slots, all.max().item<int64_t>());
    }
    for (int64_t l = 0; l < L; ++l) {
      Kept one = FromOrder(orders[l], counts[l], slots);
      if (one.idx.size(0) != Hkv) {
        one.idx = one.idx.expand({Hkv, slots}).contiguous();
        if (one.valid.defined()) one.valid = one.valid.expand({Hkv, slots}).contiguous();
      }
      kept.push_back(std::move(one));
    }
    return kept;
  }

  // Per-layer budgets with mean k: all k, or (layer_budget=pyramid, as PyramidKV) falling linearly from
  // (200 - pyramid_last)% of k in the first layer to pyramid_last% in the last; never below `protect`, nor
  // above the `slots` a layer holds.
  std::vector<int64_t> LayerBudgets(int64_t k, int64_t L, int64_t protect, int64_t slots) const {
    std::vector<int64_t> budget(L, k);
    if (!o_.pyramid || L < 2) return budget;
    const double last = o_.pyramid_last / 100.0, first = 2.0 - last;
    for (int64_t l = 0; l < L; ++l) {
      const double share = first + (last - first) * static_cast<double>(l) / static_cast<double>(L - 1);
      budget[l] = std::clamp<int64_t>(std::llround(share * static_cast<double>(k)), std::min(protect, k), slots);
    }
    return budget;
  }

  // head_budget=adaptive (as AdaKV): the heads of a layer share heads * k slots. Each head first gets
  // head_floor% of k, then the rest go to the best remaining entries of any head, by span score (key [Hkv, n],
  // in each head's order, -inf for padding), no head above head_cap% of k; real [Hkv] caps each head at its
  // entries. Returns [Hkv] counts.
  torch::Tensor HeadCounts(const torch::Tensor& key, const torch::Tensor& real, int64_t k) const {
    const int64_t Hkv = key.size(0), n = key.size(1);
    const int64_t floor = (k * o_.head_floor + 99) / 100;
    // A layer's cache is as long as its fullest head (kv_cache.h pads the others), so the cap is what bounds
    // the memory and the decode step of a ragged cache; it is never below the mean, so the budget fits.
    const int64_t cap = o_.head_cap > 0 ? std::max<int64_t>(k, k * o_.head_cap / 100) : n;
    torch::Tensor limit = real.clamp_max(cap);
    torch::Tensor base = limit.clamp_max(floor);
    const int64_t extra = std::min(Hkv * k, limit.sum().item<int64_t>()) - base.sum().item<int64_t>();
    if (extra <= 0) return base;
    torch::Tensor slot = torch::arange(n, real.options()).unsqueeze(0);
    torch::Tensor rest = key.masked_fill((slot < base.unsqueeze(1)).logical_or(slot >= limit.unsqueeze(1)),
                                         -std::numeric_limits<double>::infinity());
    torch::Tensor picked = std::get<1>(rest.flatten().topk(extra));
    return base + torch::bincount(torch::div(picked, n, "floor"), {}, Hkv);
  }

  // Slots of each row of scores [R, n] by priority: span score, then word score, then order. positions
  // [R, n] are the slots' context positions (those below `protect` come first); valid [R, n] marks real
  // slots (undefined: all), padding comes last. key, when given, receives the span scores in that order.
  torch::Tensor Rank(torch::Tensor scores, const torch::Tensor& positions, const torch::Tensor& valid,
                     const SpanIds& ids, int64_t protect, torch::Tensor* key = nullptr) const {
    scores = scores.to(torch::kFloat64);
    if (o_.pool_kernel > 1) {
      scores = torch::max_pool1d(scores.unsqueeze(0), o_.pool_kernel, 1, o_.pool_kernel / 2).squeeze(0)
                   .narrow(1, 0, scores.size(1));
    }
    torch::Tensor at = positions.clamp_min(0);
    torch::Tensor span = ids.span.index({at});
    torch::Tensor word = ids.word.index({at});
    if (valid.defined()) {
      // Padding pools in a group of its own, so that it never lends or borrows a score.
      span = torch::where(valid, span, ids.span.size(0));
      word = torch::where(valid, word, ids.word.size(0));
    }
    torch::Tensor span_score = Pool(scores, span, o_.span_max ? "amax" : "mean");
    torch::Tensor word_score = Pool(scores, word, "mean");
    span_score = span_score.masked_fill(positions < protect, std::numeric_limits<double>::infinity());
    if (valid.defined()) {
      const double none = -std::numeric_limits<double>::infinity();
      span_score.masked_fill_(valid.logical_not(), none);
      word_score.masked_fill_(valid.logical_not(), none);
    }
    torch::Tensor by_word = std::get<1>(word_score.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
    torch::Tensor by_span =
        std::get<1>(span_score.gather(1, by_word).sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
    torch::Tensor order = by_word.gather(1, by_span);
    if (key != nullptr) *key = span_score.gather(1, order);
    return order;
  }

  // Moves each head's real entries of a ragged layer to its first slots and drops the slots no head uses.
  void Compact(KvCache& cache, int64_t layer, const Rope& rope) const {
    torch::Tensor valid = cache.Valid(layer);
    if (!valid.defined()) return;
    const int64_t n = valid.size(1);
    torch::Tensor slot = torch::arange(n, torch::TensorOptions().dtype(torch::kInt64).device(valid.device()));
    torch::Tensor order = std::get<1>(torch::where(valid, slot, slot + n).sort(1));
    torch::Tensor counts = valid.sum(1);
    Kept kept = FromOrder(order, counts, counts.max().item<int64_t>());
    GatherLayer(cache, layer, kept.idx, o_.rerotate, rope, kept.valid);
  }

  // Each entry's score replaced by the `reduce` of the scores of the entries in its group ([R, n] group ids).
  static torch::Tensor Pool(const torch::Tensor& scores, const torch::Tensor& group, const char* reduce) {
    const int64_t groups = group.max().item<int64_t>() + 1;
    torch::Tensor pooled = torch::zeros({scores.size(0), groups}, scores.options())
                               .scatter_reduce(1, group, scores, reduce, /*include_self=*/false);
    return pooled.gather(1, group);
  }

  FocusOptions o_;
};

template <typename T>
absl::StatusOr<T> Pick(const MethodOptions& o, const std::string& name, const std::string& fallback,
                       const std::vector<std::pair<std::string, T>>& choices) {
  std::set<std::string> allowed;
  for (const auto& [n, v] : choices) allowed.insert(n);
  KVC_ASSIGN_OR_RETURN(std::string got, o.Choice(name, fallback, allowed));
  for (const auto& [n, v] : choices) {
    if (n == got) return v;
  }
  return absl::InternalError("unreachable");
}

// Defaults that differ between the methods sharing the options below.
struct SpanDefaults {
  const char* span = "sentence";
  bool rerotate = true;
};
struct SelectionDefaults {
  const char* selection = "shared";
  const char* head_budget = "uniform";
};

// The options of the loop, the spans and the budgets, which focus, novelty and recall share.
absl::Status ParseSpanOptions(const MethodOptions& o, FocusOptions& f, SpanDefaults d = {}) {
  KVC_ASSIGN_OR_RETURN(f.chunk, o.Int("chunk_tokens", 2048, 1, int64_t{1} << 24));
  KVC_ASSIGN_OR_RETURN(f.span, Pick<Span>(o, "span", d.span,
                                          {{"token", Span::kToken},
                                           {"word", Span::kWord},
                                           {"sentence", Span::kSentence},
                                           {"fixed", Span::kFixed}}));
  KVC_ASSIGN_OR_RETURN(f.span_tokens, o.Int("span_tokens", 32, 1, 1 << 16));
  KVC_ASSIGN_OR_RETURN(f.span_max, Pick<bool>(o, "span_pool", "max", {{"max", true}, {"mean", false}}));
  KVC_ASSIGN_OR_RETURN(f.pool_kernel, o.Int("pool_kernel", 0, 0, 63));
  if (f.pool_kernel > 1 && f.pool_kernel % 2 == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.pool_kernel: ", f.pool_kernel, " must be odd (it is centred on each token) or 0"));
  }
  KVC_ASSIGN_OR_RETURN(f.sinks, o.Int("sinks", 4, 0, 1 << 16));
  KVC_ASSIGN_OR_RETURN(f.rerotate, o.Bool("rerotate", d.rerotate));
  KVC_ASSIGN_OR_RETURN(f.prefix_in_budget, o.Bool("prefix_in_budget", false));
  KVC_ASSIGN_OR_RETURN(f.pyramid, Pick<bool>(o, "layer_budget", "uniform", {{"uniform", false}, {"pyramid", true}}));
  KVC_ASSIGN_OR_RETURN(f.pyramid_last, o.Int("pyramid_last", 50, 1, 100));
  return absl::OkStatus();
}

// Which entries each layer and head keep: the options that focus and recall share.
absl::Status ParseSelectionOptions(const MethodOptions& o, FocusOptions& f, SelectionDefaults d = {}) {
  KVC_ASSIGN_OR_RETURN(f.selection, Pick<Selection>(o, "selection", d.selection,
                                                    {{"shared", Selection::kShared},
                                                     {"layer", Selection::kLayer},
                                                     {"kv_head", Selection::kKvHead}}));
  KVC_ASSIGN_OR_RETURN(std::string head_budget,
                       o.Choice("head_budget", d.head_budget, {"uniform", "adaptive", "global"}));
  f.adaptive = head_budget != "uniform";
  f.global = head_budget == "global";
  KVC_ASSIGN_OR_RETURN(f.head_floor, o.Int("head_floor", 20, 0, 100));
  KVC_ASSIGN_OR_RETURN(f.head_cap, o.Int("head_cap", 0, 0, 100000));
  if (f.head_cap > 0 && f.head_cap < 100) {
    return absl::InvalidArgumentError(absl::StrCat(
        "options.head_cap: ", f.head_cap, " is below 100 (a head may always keep the mean budget); 0 means no cap"));
  }
  if (f.adaptive && f.selection != Selection::kKvHead) {
    return absl::InvalidArgumentError(absl::StrCat(
        "options.head_budget: ", head_budget,
        " needs selection=kv_head (the other selections keep the same entries in every head)"));
  }
  if (f.global && f.pyramid) {
    return absl::InvalidArgumentError(
        "options.head_budget: global shares one budget across the layers, which layer_budget=pyramid would split");
  }
  return absl::OkStatus();
}

}  // namespace

// Options that novelty shares with focus; the others are about attention scores, which novelty has not.
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeNovelty(const CompressionSpec& spec) {
  KVC_ASSIGN_OR_RETURN(MethodOptions o, MethodOptions::Parse(spec.method, spec.options,
                                                             {"chunk_tokens", "score", "window", "span", "span_tokens",
                                                              "span_pool",
                                                              "pool_kernel", "sinks", "rerotate", "prefix_in_budget",
                                                              "layer_budget", "pyramid_last"}));
  FocusOptions f;
  f.novelty = true;
  f.contrast = false;
  f.selection = Selection::kShared;
  KVC_RETURN_IF_ERROR(ParseSpanOptions(o, f));
  KVC_ASSIGN_OR_RETURN(f.novelty_tokens, Pick<bool>(o, "score", "span", {{"span", false}, {"token", true}}));
  KVC_ASSIGN_OR_RETURN(f.novelty_window, o.Int("window", 0, 0, int64_t{1} << 24));
  return std::unique_ptr<CompressionMethod>(new Focus(spec, f));
}

// Options that recall shares with focus, with KVzip's defaults.
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeRecall(const CompressionSpec& spec) {
  KVC_ASSIGN_OR_RETURN(MethodOptions o, MethodOptions::Parse(spec.method, spec.options,
                                                             {"chunk_tokens", "span", "span_tokens", "span_pool",
                                                              "pool_kernel", "sinks", "rerotate", "prefix_in_budget",
                                                              "selection", "head_budget", "head_floor", "head_cap"}));
  FocusOptions f;
  f.recall = true;
  f.contrast = false;
  KVC_RETURN_IF_ERROR(ParseSpanOptions(o, f, {.span = "token", .rerotate = false}));
  KVC_RETURN_IF_ERROR(ParseSelectionOptions(o, f, {.selection = "kv_head", .head_budget = "global"}));
  return std::unique_ptr<CompressionMethod>(new Focus(spec, f));
}

absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeFocus(const CompressionSpec& spec) {
  if (spec.method == "novelty") return MakeNovelty(spec);
  if (spec.method == "recall") return MakeRecall(spec);
  KVC_ASSIGN_OR_RETURN(
      MethodOptions o,
      MethodOptions::Parse(spec.method, spec.options,
                           {"chunk_tokens", "score", "doc_rows", "span", "span_tokens", "span_pool", "pool_kernel",
                            "selection", "sinks", "head_weight", "normalize", "rerotate", "prefix_in_budget",
                            "layer_budget", "pyramid_last", "head_budget", "head_floor", "head_cap"}));
  FocusOptions f;
  KVC_RETURN_IF_ERROR(ParseSpanOptions(o, f));
  KVC_ASSIGN_OR_RETURN(f.contrast, Pick<bool>(o, "score", "contrast", {{"contrast", true}, {"attention", false}}));
  KVC_ASSIGN_OR_RETURN(f.doc_rows, o.Int("doc_rows", 128, 1, 1 << 16));
  KVC_RETURN_IF_ERROR(ParseSelectionOptions(o, f));
  KVC_ASSIGN_OR_RETURN(f.peak_weight, Pick<bool>(o, "head_weight", "uniform", {{"uniform", false}, {"peak", true}}));
  KVC_ASSIGN_OR_RETURN(f.normalize, o.Bool("normalize", false));
  return std::unique_ptr<CompressionMethod>(new Focus(spec, f));
}

}  // namespace kvc
