// focus on a tiny random model: its budget and protection, whole spans, one selection for all layers, the
// memory bound past the window, and its reduction to Finch (whose indices the kvpress parity tests hold).
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "compressor/methods/compression.h"
#include "compressor/methods/options.h"
#include "compressor/tokenizer/text_boundaries.h"
#include "gtest/gtest.h"
#include "tests/support/synthetic_input.h"
#include "tests/support/tiny_llama_test.h"

namespace kvc {
namespace {

class FocusTest : public kvc::testing::TinyLlamaTest {
 protected:
  static CompressionInput Input(int64_t context_len, int64_t query_len, int64_t protected_prefix = 0) {
    return kvc::testing::SyntheticInput(model_, context_len, query_len, protected_prefix);
  }

  // Words of `word` tokens, sentences of `sentence` tokens (a multiple of `word`).
  static std::vector<uint8_t> Boundaries(int64_t n, int64_t word, int64_t sentence) {
    std::vector<uint8_t> b(n, 0);
    for (int64_t i = 0; i < n; ++i) {
      if (i % word == 0) b[i] |= kWordStart;
      if (i % sentence == 0) b[i] |= kSentenceStart | kWordStart;
    }
    return b;
  }

  static absl::StatusOr<CompressionResult> Run(const std::string& method, double ratio,
                                               std::map<std::string, std::string> options,
                                               const CompressionInput& in) {
    CompressionSpec spec;
    spec.method = method;
    spec.ratio = ratio;
    spec.options = std::move(options);
    auto m = CreateCompressionMethod(spec);
    if (!m.ok()) return m.status();
    return (*m)->Compress(in);
  }

  // How many groups of `size` consecutive positions are kept in part only.
  static int64_t PartlyKeptGroups(const torch::Tensor& kept_row, int64_t size) {
    std::map<int64_t, int64_t> count;
    auto p = kept_row.accessor<int64_t, 1>();
    for (int64_t i = 0; i < p.size(0); ++i) ++count[p[i] / size];
    int64_t partly = 0;
    for (const auto& [group, n] : count) partly += n != size;
    return partly;
  }
};

TEST_F(FocusTest, KeepsTheSameTokensInEveryLayerAndHeadAndTheProtectedPrefixOutsideTheBudget) {
  CompressionInput in = Input(400, 12, /*protected_prefix=*/10);
  in.boundaries = Boundaries(400, 3, 12);
  auto r = Run("focus", 4, {{"chunk_tokens", "128"}}, in);
  ASSERT_TRUE(r.ok()) << r.status();
  // The ratio applies to the 390 document tokens; the prefix comes on top.
  EXPECT_EQ(r->stats.tokens_out, 10 + KeptTokens(4, 0, 390).value());
  const torch::Tensor first = r->stats.kept_positions[0][0];
  for (const torch::Tensor& layer : r->stats.kept_positions) {
    for (int64_t h = 0; h < layer.size(0); ++h) EXPECT_TRUE(torch::equal(layer[h], first));
  }
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(first[i].item<int64_t>(), i);
  EXPECT_TRUE(torch::equal(std::get<0>(first.sort()), first));
  EXPECT_EQ(r->cache.next_position(), r->stats.tokens_out);
  EXPECT_EQ(r->cache.key_rotation(), KeyRotation::kCompacted);
}

TEST_F(FocusTest, SpansAreKeptWholeButOne) {
  struct Case {
    std::string span;
    int64_t group;  // the span length the boundaries below make
  };
  for (const Case& c : {Case{"word", 4}, Case{"sentence", 16}, Case{"fixed", 8}}) {
    SCOPED_TRACE(c.span);
    CompressionInput in = Input(480, 8);
    in.boundaries = Boundaries(480, 4, 16);
    // One chunk: re-competition across chunks may cut a span kept earlier.
    auto r = Run("focus", 5, {{"chunk_tokens", "512"}, {"span", c.span}, {"span_tokens", c.span == "fixed" ? "8" : "32"}, {"sinks", "0"}}, in);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stats.tokens_out, 96);
    EXPECT_LE(PartlyKeptGroups(r->stats.kept_positions[0][0], c.group), 1);
  }
}

TEST_F(FocusTest, LongSentencesAreCutIntoPiecesOfAtMostSpanTokens) {
  CompressionInput in = Input(480, 8);
  in.boundaries = Boundaries(480, 4, 240);  // two long sentences of 60 words
  auto r = Run("focus", 10, {{"chunk_tokens", "512"}, {"span", "sentence"}, {"span_tokens", "8"}, {"sinks", "0"}}, in);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats.tokens_out, 48);
  EXPECT_LE(PartlyKeptGroups(r->stats.kept_positions[0][0], 8), 1);
}

TEST_F(FocusTest, WithoutBoundariesWordsAndSentencesBecomeFixedRuns) {
  auto r = Run("focus", 5, {{"chunk_tokens", "512"}, {"span", "sentence"}, {"span_tokens", "6"}, {"sinks", "0"}}, Input(480, 8));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(PartlyKeptGroups(r->stats.kept_positions[0][0], 6), 1);
}

TEST_F(FocusTest, SinksAreAlwaysKept) {
  auto r = Run("focus", 16, {{"sinks", "7"}, {"chunk_tokens", "100"}}, Input(640, 8));
  ASSERT_TRUE(r.ok()) << r.status();
  for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(r->stats.kept_positions.back()[1][i].item<int64_t>(), i);
}

TEST_F(FocusTest, LayerAndKvHeadSelection) {
  CompressionInput in = Input(300, 8);
  auto layer = Run("focus", 4, {{"chunk_tokens", "512"}, {"selection", "layer"}, {"span", "token"}}, in);
  ASSERT_TRUE(layer.ok()) << layer.status();
  for (const torch::Tensor& p : layer->stats.kept_positions) EXPECT_TRUE(torch::equal(p[0], p[1]));
  EXPECT_FALSE(torch::equal(layer->stats.kept_positions[0], layer->stats.kept_positions[1]))
      << "two random layers attend alike";
  auto head = Run("focus", 4, {{"chunk_tokens", "512"}, {"selection", "kv_head"}, {"span", "token"}}, in);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_FALSE(torch::equal(head->stats.kept_positions[0][0], head->stats.kept_positions[0][1]));
}

// With the suffix's plain attention, token spans and per-head selection, focus is Finch.
TEST_F(FocusTest, WithAttentionScoresTokenSpansAndKvHeadSelectionItKeepsWhatFinchKeeps) {
  for (const std::string chunk : {"64", "1000"}) {
    SCOPED_TRACE(chunk);
    CompressionInput in = Input(300, 9);
    auto finch = Run("finch", 4, {{"chunk_tokens", chunk}}, in);
    auto focus = Run("focus", 4,
                     {{"chunk_tokens", chunk},
                      {"score", "attention"},
                      {"normalize", "on"},
                      {"span", "token"},
                      {"selection", "kv_head"},
                      {"sinks", "0"}},
                     in);
    ASSERT_TRUE(finch.ok()) << finch.status();
    ASSERT_TRUE(focus.ok()) << focus.status();
    ASSERT_EQ(finch->stats.kept_positions.size(), focus->stats.kept_positions.size());
    for (size_t l = 0; l < finch->stats.kept_positions.size(); ++l) {
      EXPECT_TRUE(torch::equal(finch->stats.kept_positions[l], focus->stats.kept_positions[l])) << "layer " << l;
    }
    for (int64_t l = 0; l < finch->cache.num_layers(); ++l) {
      EXPECT_TRUE(torch::allclose(finch->cache.Keys(l), focus->cache.Keys(l)));
    }
  }
}

TEST_F(FocusTest, MemoryIsBoundedPastTheModelWindow) {
  // tiny_llama's window is 1024 positions.
  const int64_t context = 3000, query = 10, chunk = 256;
  auto r = Run("focus", 8, {{"chunk_tokens", std::to_string(chunk)}}, Input(context, query));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats.tokens_out, 375);
  EXPECT_LE(r->stats.peak_cache_entries, 375 + chunk + query);
  EXPECT_EQ(r->stats.chunk_seconds.size(), 12u);
}

TEST_F(FocusTest, ScoresAPrefilledContext) {
  CompressionInput in = Input(200, 8);
  KvCache full = model_->NewCache();
  ASSERT_TRUE(model_->Prefill(in.context, full).ok());
  in.prefilled = &full;
  auto r = Run("focus", 4, {}, in);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats.tokens_out, 50);
  EXPECT_EQ(r->stats.chunk_seconds.size(), 1u);
  EXPECT_EQ(full.length(), 200) << "the prefilled context is borrowed, not changed";
}

TEST_F(FocusTest, CancellationStopsBetweenChunks) {
  CompressionInput in = Input(600, 8);
  int calls = 0;
  in.keep_going = [&calls] { return ++calls < 3; };
  EXPECT_EQ(Run("focus", 4, {{"chunk_tokens", "100"}}, in).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 3);
}

// Real entries of every head of every layer.
std::vector<std::vector<int64_t>> HeadLengths(const KvCache& cache) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t l = 0; l < cache.num_layers(); ++l) out.push_back(cache.HeadLengths(l));
  return out;
}

TEST_F(FocusTest, AdaptiveHeadBudgetsSplitTheLayersEntriesUnevenlyAndDecode) {
  CompressionInput in = Input(600, 12);
  const int64_t k = KeptTokens(4, 0, 600).value();
  auto r = Run("focus", 4,
               {{"chunk_tokens", "128"}, {"selection", "kv_head"}, {"head_budget", "adaptive"}, {"span", "token"}},
               in);
  ASSERT_TRUE(r.ok()) << r.status();
  bool uneven = false;
  for (const std::vector<int64_t>& heads : HeadLengths(r->cache)) {
    int64_t sum = 0;
    for (int64_t n : heads) {
      sum += n;
      EXPECT_GE(n, (k * 20 + 99) / 100) << "every head keeps at least head_floor% of the per-head budget";
      uneven = uneven || n != heads[0];
    }
    EXPECT_EQ(sum, static_cast<int64_t>(heads.size()) * k) << "the heads of a layer share heads * k entries";
  }
  EXPECT_TRUE(uneven) << "on a random model some heads should win more entries than others";
  EXPECT_TRUE(r->cache.ragged());
  int64_t fullest = 0;
  for (const auto& heads : HeadLengths(r->cache)) fullest = std::max(fullest, *std::max_element(heads.begin(), heads.end()));
  EXPECT_EQ(r->stats.tokens_out, fullest);
  // kept_positions: each head's positions ascending, then -1 padding.
  for (int64_t l = 0; l < r->cache.num_layers(); ++l) {
    const torch::Tensor& pos = r->stats.kept_positions[l];
    for (int64_t h = 0; h < pos.size(0); ++h) {
      const int64_t n = r->cache.HeadLengths(l)[h];
      torch::Tensor real = pos[h].narrow(0, 0, n);
      EXPECT_TRUE(torch::equal(std::get<0>(real.sort()), real));
      EXPECT_TRUE((pos[h].narrow(0, n, pos.size(1) - n) == -1).all().item<bool>());
    }
  }
  // The ragged cache decodes: the next token sees each head's own entries.
  ForwardOptions fo;
  fo.logits_for = {0};
  const int64_t next = r->cache.next_position();
  auto out = model_->Forward(torch::tensor({7}, torch::kInt64), torch::tensor({next}, torch::kInt64), r->cache, fo);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(torch::isfinite(out->logits).all().item<bool>());
}

TEST_F(FocusTest, AdaptiveHeadsHoldExactlyTheEntriesOfTheFullPrefill) {
  // In one chunk and without re-rotation, the kept KV is the full prefill's at the kept entries: decoding the
  // compressed ragged cache must equal decoding the full cache with everything else hidden per head.
  CompressionInput in = Input(300, 10);
  auto r = Run("focus", 3,
               {{"chunk_tokens", "1000"}, {"selection", "kv_head"}, {"head_budget", "adaptive"},
                {"rerotate", "false"}},
               in);
  ASSERT_TRUE(r.ok()) << r.status();
  KvCache full = model_->NewCache();
  ASSERT_TRUE(model_->Prefill(in.context, full).ok());
  {
    c10::InferenceMode guard;
    for (int64_t l = 0; l < full.num_layers(); ++l) {
      torch::Tensor kept = torch::zeros({full.shape().kv_heads, 300}, torch::kBool);
      torch::Tensor pos = r->stats.kept_positions[l];
      for (int64_t h = 0; h < pos.size(0); ++h) {
        torch::Tensor real = pos[h].masked_select(pos[h] >= 0);
        kept[h].index_fill_(0, real, true);
      }
      full.Reset(l, full.Keys(l).clone(), full.Values(l).clone(), full.Positions(l).clone(), kept);
    }
  }
  ForwardOptions fo;
  fo.logits_for = {0, 1, 2};
  torch::Tensor ids = torch::tensor({5, 9, 11}, torch::kInt64), at = torch::arange(300, 303, torch::kInt64);
  auto got = model_->Forward(ids, at, r->cache, fo);
  auto want = model_->Forward(ids, at, full, fo);
  ASSERT_TRUE(got.ok() && want.ok());
  EXPECT_TRUE(torch::allclose(got->logits, want->logits, 1e-4, 1e-5));
}

TEST_F(FocusTest, PyramidBudgetsShrinkWithDepthAndKeepTheMean) {
  CompressionInput in = Input(600, 12);
  in.boundaries = Boundaries(600, 3, 12);
  const int64_t k = KeptTokens(4, 0, 600).value();
  for (const std::string selection : {"layer", "shared"}) {
    SCOPED_TRACE(selection);
    auto r = Run("focus", 4, {{"chunk_tokens", "128"}, {"selection", selection}, {"layer_budget", "pyramid"}}, in);
    ASSERT_TRUE(r.ok()) << r.status();
    // Two layers: 150% and 50% of k (pyramid_last=50).
    EXPECT_EQ(r->cache.HeadLengths(0), std::vector<int64_t>(2, (3 * k + 1) / 2));
    EXPECT_EQ(r->cache.HeadLengths(1), std::vector<int64_t>(2, (k + 1) / 2));
    EXPECT_EQ(r->cache.length(1), r->cache.HeadLengths(1)[0]) << "a smaller layer holds no padding";
    if (selection == "shared") {
      // One ranking: the deeper layer keeps the best part of what the first one keeps.
      torch::Tensor first = r->stats.kept_positions[0][0], second = r->stats.kept_positions[1][0];
      EXPECT_TRUE(torch::isin(second, first).all().item<bool>());
    }
  }
}

TEST_F(FocusTest, BadOptionsAndBoundariesGetPreciseErrors) {
  struct Bad {
    std::map<std::string, std::string> options;
    std::string needle;
    absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  };
  for (const Bad& b : {Bad{{{"pool_kernel", "4"}}, "pool_kernel"}, Bad{{{"span", "paragraph"}}, "span"},
                       Bad{{{"selection", "head"}}, "selection"}, Bad{{{"score", "tfidf"}}, "score"},
                       Bad{{{"doc_rows", "0"}}, "doc_rows", absl::StatusCode::kOutOfRange}, Bad{{{"granularity", "layer"}}, "granularity"},
                       Bad{{{"head_budget", "adaptive"}}, "kv_head"}, Bad{{{"layer_budget", "cone"}}, "layer_budget"},
                       Bad{{{"pyramid_last", "0"}}, "pyramid_last", absl::StatusCode::kOutOfRange}}) {
    auto r = Run("focus", 4, b.options, Input(100, 4));
    EXPECT_EQ(r.status().code(), b.code) << b.needle;
    EXPECT_NE(r.status().message().find(b.needle), std::string::npos) << r.status();
  }
  CompressionInput in = Input(100, 4);
  in.boundaries.assign(99, kWordStart);
  auto r = Run("focus", 4, {}, in);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("boundaries"), std::string::npos) << r.status();
  EXPECT_EQ(Run("focus", 4, {}, Input(100, 0)).status().code(), absl::StatusCode::kInvalidArgument)
      << "focus scores with the query";
}

TEST_F(FocusTest, NoveltyKeepsTheSpanUnlikeTheRestWithoutAQuery) {
  // A document of one repeated token with a sentence of eight different ones in its middle: their hidden
  // states are the ones far from their neighbours'.
  CompressionInput in = Input(0, 0, /*protected_prefix=*/4);
  in.context = {1, 2, 3, 4};
  for (int64_t i = 0; i < 300; ++i) in.context.push_back(i >= 148 && i < 156 ? 200 + 13 * (i - 148) : 77);
  in.boundaries = Boundaries(304, 1, 8);  // the odd sentence is context[152, 160)
  CompressionSpec spec;
  spec.method = "novelty";
  // The first tokens, which a random model reads differently while its attention still averages over few
  // earlier ones, are sinks here; then the prefix, the sinks and the odd sentence fill the budget.
  spec.target_tokens = 4 + 4 + 8;
  spec.options = {{"chunk_tokens", "512"}, {"sinks", "4"}, {"window", "64"}};
  auto method = CreateCompressionMethod(spec);
  ASSERT_TRUE(method.ok()) << method.status();
  EXPECT_FALSE((*method)->query_aware());
  auto r = (*method)->Compress(in);
  ASSERT_TRUE(r.ok()) << r.status();
  const torch::Tensor kept = r->stats.kept_positions[0][0];
  ASSERT_EQ(kept.size(0), 16);
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(kept[8 + i].item<int64_t>(), 152 + i) << i;
  for (const torch::Tensor& layer : r->stats.kept_positions) {
    for (int64_t h = 0; h < layer.size(0); ++h) EXPECT_TRUE(torch::equal(layer[h], kept));
  }

  // The question changes nothing, and chunking only bounds the memory.
  in.suffix = {5, 6, 7};
  auto with_query = (*method)->Compress(in);
  ASSERT_TRUE(with_query.ok()) << with_query.status();
  EXPECT_TRUE(torch::equal(with_query->stats.kept_positions[0], r->stats.kept_positions[0]));
  auto chunked = Run("novelty", 4, {{"chunk_tokens", "64"}}, Input(600, 0, 10));
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  EXPECT_EQ(chunked->stats.tokens_out, 10 + KeptTokens(4, 0, 590).value());
  EXPECT_LE(chunked->stats.peak_cache_entries, chunked->stats.tokens_out + 64);
}

TEST_F(FocusTest, NoveltyAndRecallRefuseStoredCachesAndNoveltyAttentionOptions) {
  CompressionInput in = Input(200, 0);
  KvCache full = model_->NewCache();
  ASSERT_TRUE(model_->Prefill(in.context, full).ok());
  in.prefilled = &full;
  for (const char* method : {"novelty", "recall"}) {
    auto r = Run(method, 4, {}, in);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << method;
    EXPECT_NE(r.status().message().find("document_cache_ids"), std::string::npos) << r.status();
  }
  for (const char* name : {"score", "selection", "doc_rows", "head_budget"}) {  // score is span or token
    auto bad = Run("novelty", 4, {{name, "x"}}, Input(100, 0));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
}

// recall's score, computed here from its definition: in one chunk (no sinks before it), each head's scores
// are the most attention any replayed row of its query group gives each context entry, the softmax running
// over the context and the replay so far. With uniform budgets every head keeps its top k of them.
TEST_F(FocusTest, RecallKeepsWhatTheReplayAttendsToMostPerHead) {
  CompressionInput in = Input(160, 0);
  const int64_t C = 160, k = KeptTokens(4, 0, C).value();
  auto r = Run("recall", 4, {{"head_budget", "uniform"}, {"sinks", "0"}, {"chunk_tokens", "512"}}, in);
  ASSERT_TRUE(r.ok()) << r.status();

  c10::InferenceMode guard;
  KvCache cache = model_->NewCache();
  torch::Tensor ids = torch::tensor(in.context, torch::kInt64);
  ASSERT_TRUE(model_->Forward(ids, torch::arange(C, torch::kInt64), cache, {}).ok());
  ForwardOptions fo;
  fo.capture_queries = C;
  auto replay = model_->Forward(ids, torch::arange(C, 2 * C, torch::kInt64), cache, fo);
  ASSERT_TRUE(replay.ok()) << replay.status();
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    const torch::Tensor q = replay->queries[l];  // [H, C, D]
    const int64_t H = q.size(0), Hkv = cache.shape().kv_heads, D = q.size(2);
    torch::Tensor keys = cache.Keys(l).repeat_interleave(H / Hkv, 0);  // [H, 2C, D]
    torch::Tensor logits = torch::matmul(q, keys.transpose(1, 2)) / std::sqrt(static_cast<double>(D));
    torch::Tensor later = torch::arange(2 * C).unsqueeze(0) > (torch::arange(C) + C).unsqueeze(1);  // [C, 2C]
    torch::Tensor attn = torch::softmax(logits.masked_fill(later, -INFINITY), -1).narrow(2, 0, C);
    torch::Tensor score = std::get<0>(attn.amax(1).view({Hkv, H / Hkv, C}).max(1));  // [Hkv, C]
    for (int64_t h = 0; h < Hkv; ++h) {
      torch::Tensor want = std::get<0>(std::get<1>(score[h].topk(k)).sort());
      EXPECT_TRUE(torch::equal(r->stats.kept_positions[l][h], want)) << "layer " << l << " head " << h;
    }
  }
}

// The default, as KVzip: every layer and head share one budget of layers * heads * k entries, each head
// keeping at least head_floor% of k and its protected prefix; positions stay the document's; no query.
TEST_F(FocusTest, RecallSharesOneBudgetAcrossLayersAndHeadsWithoutAQuery) {
  CompressionInput in = Input(600, 0, /*protected_prefix=*/6);
  const int64_t k = 6 + KeptTokens(4, 0, 594).value();
  auto method = CreateCompressionMethod(CompressionSpec{"recall", 4, 0, {{"chunk_tokens", "128"}}});
  ASSERT_TRUE(method.ok()) << method.status();
  EXPECT_FALSE((*method)->query_aware());
  auto r = (*method)->Compress(in);
  ASSERT_TRUE(r.ok()) << r.status();
  int64_t total = 0, heads = 0;
  std::set<int64_t> counts;
  for (int64_t l = 0; l < r->cache.num_layers(); ++l) {
    const std::vector<int64_t> n = r->cache.HeadLengths(l);
    for (size_t h = 0; h < n.size(); ++h) {
      total += n[h];
      ++heads;
      counts.insert(n[h]);
      EXPECT_GE(n[h], (k * 20 + 99) / 100);
      torch::Tensor pos = r->stats.kept_positions[l][h].narrow(0, 0, 6);
      EXPECT_TRUE(torch::equal(pos, torch::arange(6, torch::kInt64))) << "the protected prefix, in every head";
    }
  }
  EXPECT_EQ(total, heads * k);
  EXPECT_GT(counts.size(), 1u) << "on a random model the heads should not split the budget evenly";
  EXPECT_EQ(r->cache.next_position(), 600) << "rerotate=false: the suffix continues after the document";

  in.suffix = {5, 6, 7};
  auto with_query = (*method)->Compress(in);
  ASSERT_TRUE(with_query.ok()) << with_query.status();
  for (int64_t l = 0; l < r->cache.num_layers(); ++l) {
    EXPECT_TRUE(torch::equal(with_query->stats.kept_positions[l], r->stats.kept_positions[l])) << l;
  }
  // The ragged cache decodes at its next position.
  ForwardOptions fo;
  fo.logits_for = {0};
  auto out = model_->Forward(torch::tensor({7}, torch::kInt64), torch::tensor({600}, torch::kInt64), r->cache, fo);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(torch::isfinite(out->logits).all().item<bool>());
}

// head_cap bounds every head at head_cap% of k, and so each layer's length in memory (a layer is as long as
// its fullest head), while the heads still share the whole budget.
TEST_F(FocusTest, RecallHeadCapBoundsEveryHeadAndTheLayerLength) {
  CompressionInput in = Input(600, 0, /*protected_prefix=*/6);
  const int64_t k = 6 + KeptTokens(4, 0, 594).value();
  const int64_t cap = k * 105 / 100;
  auto uncapped = Run("recall", 4, {{"chunk_tokens", "128"}}, in);
  auto capped = Run("recall", 4, {{"chunk_tokens", "128"}, {"head_cap", "105"}}, in);
  ASSERT_TRUE(uncapped.ok() && capped.ok()) << uncapped.status() << capped.status();
  int64_t longest = 0, total = 0, heads = 0;
  for (int64_t l = 0; l < uncapped->cache.num_layers(); ++l) {
    longest = std::max(longest, uncapped->cache.length(l));
    EXPECT_LE(capped->cache.length(l), cap) << "layer " << l;
    for (int64_t n : capped->cache.HeadLengths(l)) {
      EXPECT_LE(n, cap);
      total += n;
      ++heads;
    }
  }
  EXPECT_GT(longest, cap) << "on a random model some head should want more than the cap";
  EXPECT_EQ(total, heads * k);
}

TEST_F(FocusTest, RecallRefusesBadOptions) {
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"score", "contrast"}, {"window", "8"}, {"head_budget", "x"}, {"layer_budget", "pyramid"}, {"head_cap", "50"}}) {
    auto bad = Run("recall", 4, {{name, value}}, Input(100, 0));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
  auto shared = Run("recall", 4, {{"selection", "shared"}}, Input(100, 0));
  EXPECT_EQ(shared.status().code(), absl::StatusCode::kInvalidArgument) << "global budgets need kv_head";
  EXPECT_NE(shared.status().message().find("kv_head"), std::string::npos) << shared.status();
  EXPECT_TRUE(
      Run("recall", 4, {{"selection", "shared"}, {"head_budget", "uniform"}, {"chunk_tokens", "512"}}, Input(100, 0))
          .ok());
  auto pyramid = Run("focus", 4, {{"selection", "kv_head"}, {"head_budget", "global"}, {"layer_budget", "pyramid"}},
                     Input(100, 4));
  EXPECT_EQ(pyramid.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvc
