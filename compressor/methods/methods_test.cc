// Behaviour of every method on a tiny random model: budgets, protected prefix, positions, memory bound,
// cancellation, precise errors for bad specs, and compression of an already prefilled context.
#include <set>

#include "compressor/kv/compose.h"
#include "compressor/methods/compression.h"
#include "gtest/gtest.h"
#include "tests/support/synthetic_input.h"
#include "tests/support/tiny_llama_test.h"

namespace kvc {
namespace {

class MethodsTest : public kvc::testing::TinyLlamaTest {
 protected:

  CompressionInput Input(int64_t context_len, int64_t query_len, int64_t protected_prefix = 0) {
    return kvc::testing::SyntheticInput(model_, context_len, query_len, protected_prefix);
  }

  absl::StatusOr<CompressionResult> Run(CompressionSpec spec, const CompressionInput& in) {
    auto method = CreateCompressionMethod(spec);
    if (!method.ok()) return method.status();
    return (*method)->Compress(in);
  }

  // The plain full prefill of `in`'s context.
  static KvCache FullPrefill(const CompressionInput& in) {
    KvCache c = model_->NewCache();
    auto logits = model_->Prefill(in.context, c);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return c;
  }

  static double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
    if (a.numel() == 0 && b.numel() == 0) return 0;
    return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  }

  // Same entries, bit for bit, and the same attributes.
  static void ExpectSameCache(const KvCache& a, const KvCache& b) {
    ASSERT_EQ(a.num_layers(), b.num_layers());
    EXPECT_EQ(a.next_position(), b.next_position());
    EXPECT_EQ(a.key_rotation(), b.key_rotation());
    EXPECT_EQ(a.model_fingerprint(), b.model_fingerprint());
    for (int64_t l = 0; l < a.num_layers(); ++l) {
      ASSERT_EQ(a.length(l), b.length(l));
      EXPECT_TRUE(torch::equal(a.Keys(l), b.Keys(l)));
      EXPECT_TRUE(torch::equal(a.Values(l), b.Values(l)));
      EXPECT_TRUE(torch::equal(a.Positions(l), b.Positions(l)));
    }
  }
};

CompressionSpec Spec(const std::string& method, double ratio, std::map<std::string, std::string> options = {}) {
  CompressionSpec s;
  s.method = method;
  s.ratio = ratio;
  s.options = std::move(options);
  return s;
}

TEST_F(MethodsTest, EveryMethodKeepsTheBudgetAndTheProtectedPrefix) {
  for (const std::string m : {"finch", "snapkv", "streaming_llm", "knorm", "random", "truncate"}) {
    SCOPED_TRACE(m);
    auto r = Run(Spec(m, 4, m == "finch" ? std::map<std::string, std::string>{{"chunk_tokens", "100"}}
                                         : std::map<std::string, std::string>{}),
                 Input(400, 12, /*protected_prefix=*/6));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stats.tokens_in, 400);
    EXPECT_EQ(r->stats.tokens_out, 100);
    EXPECT_EQ(r->cache.length(), 100);
    ASSERT_EQ(r->stats.kept_positions.size(), 2u);
    for (const torch::Tensor& p : r->stats.kept_positions) {
      EXPECT_EQ(p.sizes(), (c10::IntArrayRef{2, 100}));
      for (int64_t h = 0; h < 2; ++h) {
        torch::Tensor row = p[h];
        EXPECT_TRUE(torch::equal(row, std::get<0>(row.sort()))) << "positions ascending";
        EXPECT_EQ(std::get<0>(at::_unique(row)).numel(), 100) << "no duplicates";
        EXPECT_GE(row.min().item<int64_t>(), 0);
        EXPECT_LT(row.max().item<int64_t>(), 400);
        EXPECT_TRUE(torch::equal(row.narrow(0, 0, 6), torch::arange(6, torch::kInt64))) << "protected prefix kept";
      }
    }
    // The cache decodes: one more token continues at next_position.
    ForwardOptions fo;
    fo.logits_for = {0};
    auto step = model_->Forward(torch::tensor({7}, torch::kInt64), torch::tensor({r->cache.next_position()}, torch::kInt64),
                                r->cache, fo);
    ASSERT_TRUE(step.ok()) << step.status();
    EXPECT_TRUE(torch::isfinite(step->logits).all().item<bool>());
  }
}

TEST_F(MethodsTest, NoneKeepsEverything) {
  CompressionSpec s;
  s.method = "none";
  auto r = Run(s, Input(50, 0));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats.tokens_out, 50);
  EXPECT_EQ(r->cache.next_position(), 50);
}

TEST_F(MethodsTest, PrefillChunksDefaultTo512TokensOnTheCpu) {
  EXPECT_EQ(AutoPrefillChunk(*model_), 512);
  // 1100 context tokens in chunks of 512 or 100; truncate at 2x prefills only the 550 tokens it keeps.
  for (const char* method : {"none", "snapkv", "knorm", "streaming_llm", "random", "truncate"}) {
    const bool truncate = std::string(method) == "truncate";
    CompressionSpec s = Spec(method, std::string(method) == "none" ? 0 : 2);
    auto r = Run(s, Input(1100, 16));
    ASSERT_TRUE(r.ok()) << method << ": " << r.status();
    EXPECT_EQ(r->stats.chunk_seconds.size(), truncate ? 2u : 3u) << method;
    s.options["chunk_tokens"] = "100";
    r = Run(s, Input(1100, 16));
    ASSERT_TRUE(r.ok()) << method << ": " << r.status();
    EXPECT_EQ(r->stats.chunk_seconds.size(), truncate ? 6u : 11u) << method;
  }
}

TEST_F(MethodsTest, StreamingLlmKeepsSinksAndRecentTokens) {
  auto r = Run(Spec("streaming_llm", 10, {{"n_sink", "4"}}), Input(200, 0));
  ASSERT_TRUE(r.ok()) << r.status();
  torch::Tensor want = torch::cat({torch::arange(4, torch::kInt64), torch::arange(184, 200, torch::kInt64)});
  EXPECT_TRUE(torch::equal(r->stats.kept_positions[0][0], want));
}

TEST_F(MethodsTest, RandomIsReproducible) {
  auto a = Run(Spec("random", 4, {{"seed", "7"}}), Input(100, 0));
  auto b = Run(Spec("random", 4, {{"seed", "7"}}), Input(100, 0));
  auto c = Run(Spec("random", 4, {{"seed", "8"}}), Input(100, 0));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(torch::equal(a->stats.kept_positions[1], b->stats.kept_positions[1]));
  EXPECT_FALSE(torch::equal(a->stats.kept_positions[1], c->stats.kept_positions[1]));
}

TEST_F(MethodsTest, FinchMemoryIsBoundedPastTheModelWindow) {
  // tiny_llama's window is 1024 positions; 3000 context tokens only work because positions are compacted.
  const int64_t context = 3000, query = 10, chunk = 256, ratio = 8;
  auto r = Run(Spec("finch", ratio, {{"chunk_tokens", std::to_string(chunk)}}), Input(context, query));
  ASSERT_TRUE(r.ok()) << r.status();
  const int64_t budget = context / ratio;
  EXPECT_EQ(r->stats.tokens_out, budget);
  EXPECT_LE(r->stats.peak_cache_entries, budget + chunk + query);
  EXPECT_EQ(r->stats.chunk_seconds.size(), static_cast<size_t>((context + chunk - 1) / chunk));
  EXPECT_EQ(r->cache.next_position(), budget);  // re-rotated to 0..budget-1
  EXPECT_GT(r->stats.kept_positions[0].max().item<int64_t>(), 2900) << "late tokens can survive";
}

TEST_F(MethodsTest, FinchWithoutRerotationKeepsOriginalPositions) {
  auto r = Run(Spec("finch", 4, {{"chunk_tokens", "64"}, {"rerotate", "off"}, {"granularity", "layer"}}), Input(300, 8));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cache.next_position(), 300);
  // layer granularity: one index set per layer, shared by its heads
  EXPECT_TRUE(torch::equal(r->stats.kept_positions[0][0], r->stats.kept_positions[0][1]));
}

TEST_F(MethodsTest, CancellationStopsBetweenChunks) {
  CompressionInput in = Input(600, 8);
  int calls = 0;
  in.keep_going = [&calls] { return ++calls < 3; };
  auto r = Run(Spec("finch", 4, {{"chunk_tokens", "100"}}), in);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 3);
}

struct BadSpec {
  std::string label;
  CompressionSpec spec;
  int64_t context, query;
  absl::StatusCode code;
  std::string field;  // must appear in the message
};

TEST_F(MethodsTest, BadSpecsGetPreciseErrors) {
  CompressionSpec target_zero = Spec("snapkv", 0);
  CompressionSpec target_big = Spec("knorm", 0);
  target_big.target_tokens = 101;
  CompressionSpec target_neg = Spec("knorm", 0);
  target_neg.target_tokens = -3;
  CompressionSpec both = Spec("knorm", 2);
  both.target_tokens = 10;
  std::vector<BadSpec> cases = {
      {"ratio below 1", Spec("finch", 0.5), 100, 5, absl::StatusCode::kOutOfRange, "ratio"},
      {"negative ratio", Spec("knorm", -2), 100, 0, absl::StatusCode::kOutOfRange, "ratio"},
      {"no budget", target_zero, 100, 0, absl::StatusCode::kInvalidArgument, "target_tokens"},
      {"target past context", target_big, 100, 0, absl::StatusCode::kOutOfRange, "target_tokens"},
      {"negative target", target_neg, 100, 0, absl::StatusCode::kOutOfRange, "target_tokens"},
      {"both budgets", both, 100, 0, absl::StatusCode::kInvalidArgument, "target_tokens"},
      {"chunk 0", Spec("finch", 2, {{"chunk_tokens", "0"}}), 100, 5, absl::StatusCode::kOutOfRange, "chunk_tokens"},
      {"chunk past window", Spec("finch", 2, {{"chunk_tokens", "5000"}}), 100, 5, absl::StatusCode::kOutOfRange,
       "chunk_tokens"},
      {"chunk not a number", Spec("finch", 2, {{"chunk_tokens", "big"}}), 100, 5, absl::StatusCode::kInvalidArgument,
       "chunk_tokens"},
      {"empty context", Spec("knorm", 2), 0, 0, absl::StatusCode::kInvalidArgument, "context"},
      {"empty query for finch", Spec("finch", 2), 100, 0, absl::StatusCode::kInvalidArgument, "query"},
      {"empty query for snapkv window=query", Spec("snapkv", 2, {{"window", "query"}}), 100, 0,
       absl::StatusCode::kInvalidArgument, "query"},
      {"unknown method", Spec("magic", 2), 100, 5, absl::StatusCode::kInvalidArgument, "method"},
      {"unknown option", Spec("knorm", 2, {{"windw", "3"}}), 100, 0, absl::StatusCode::kInvalidArgument, "windw"},
      {"bad granularity", Spec("finch", 2, {{"granularity", "token"}}), 100, 5, absl::StatusCode::kInvalidArgument,
       "granularity"},
      {"bad boolean", Spec("finch", 2, {{"normalize", "maybe"}}), 100, 5, absl::StatusCode::kInvalidArgument,
       "normalize"},
      {"even kernel", Spec("snapkv", 2, {{"kernel", "4"}}), 100, 0, absl::StatusCode::kInvalidArgument, "kernel"},
      {"window too large", Spec("snapkv", 2, {{"window", "500"}}), 100, 0, absl::StatusCode::kOutOfRange, "window"},
  };
  for (const BadSpec& c : cases) {
    SCOPED_TRACE(c.label);
    auto r = Run(c.spec, Input(c.context, c.query));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), c.code) << r.status();
    EXPECT_NE(r.status().message().find(c.field), std::string::npos) << r.status();
  }
  CompressionInput oov = Input(50, 3);
  oov.context[10] = 512;
  auto r = Run(Spec("finch", 2), oov);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
}

struct PrefilledCase {
  std::string label;
  CompressionSpec spec;
};

TEST_F(MethodsTest, APrefilledContextCompressesLikeItsTokenIds) {
  CompressionSpec none;
  none.method = "none";
  const std::vector<PrefilledCase> cases = {
      {"finch", Spec("finch", 4, {{"chunk_tokens", "300"}})},
      {"finch keep_query, layer, no rerotation",
       Spec("finch", 4, {{"chunk_tokens", "512"}, {"keep_query", "on"}, {"granularity", "layer"}, {"rerotate", "off"}})},
      {"snapkv window=query", Spec("snapkv", 4, {{"window", "query"}})},
      {"snapkv window inside the query", Spec("snapkv", 4, {{"window", "8"}, {"pooling", "max"}})},
      {"streaming_llm", Spec("streaming_llm", 4)},
      {"knorm", Spec("knorm", 4)},
      {"random", Spec("random", 4, {{"seed", "3"}})},
      {"none", none},
  };
  const CompressionInput by_ids = Input(300, 12, /*protected_prefix=*/6);
  const KvCache full = FullPrefill(by_ids);
  auto snapshot = CopyCache(full);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  CompressionInput by_kv = by_ids;
  by_kv.context.clear();
  by_kv.prefilled = &full;
  for (const PrefilledCase& c : cases) {
    SCOPED_TRACE(c.label);
    auto want = Run(c.spec, by_ids);
    ASSERT_TRUE(want.ok()) << want.status();
    auto got = Run(c.spec, by_kv);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->stats.tokens_in, 300);
    EXPECT_EQ(got->stats.tokens_out, want->stats.tokens_out);
    EXPECT_EQ(got->cache.next_position(), want->cache.next_position());
    EXPECT_EQ(got->cache.key_rotation(), want->cache.key_rotation());
    EXPECT_EQ(got->cache.model_fingerprint(), model_->fingerprint());
    ASSERT_EQ(got->stats.kept_positions.size(), want->stats.kept_positions.size());
    for (int64_t l = 0; l < model_->config().num_layers; ++l) {
      SCOPED_TRACE(l);
      EXPECT_TRUE(torch::equal(got->stats.kept_positions[l], want->stats.kept_positions[l]));
      EXPECT_TRUE(torch::equal(got->cache.Positions(l), want->cache.Positions(l)));
      EXPECT_LE(MaxDiff(got->cache.Keys(l), want->cache.Keys(l)), 1e-5);
      EXPECT_LE(MaxDiff(got->cache.Values(l), want->cache.Values(l)), 1e-5);
    }
    // The same context given both ways is the same input.
    CompressionInput both = by_kv;
    both.context = by_ids.context;
    auto again = Run(c.spec, both);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_TRUE(torch::equal(again->stats.kept_positions[1], got->stats.kept_positions[1]));
    // The prefilled cache is only read.
    ExpectSameCache(full, *snapshot);
  }
}

TEST_F(MethodsTest, TruncateSelectsFromAPrefilledContext) {
  const CompressionInput by_ids = Input(200, 0, /*protected_prefix=*/6);
  const KvCache full = FullPrefill(by_ids);
  CompressionInput by_kv = by_ids;
  by_kv.context.clear();
  by_kv.prefilled = &full;
  auto want = Run(Spec("truncate", 4), by_ids);
  auto got = Run(Spec("truncate", 4), by_kv);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->stats.tokens_out, 50);
  EXPECT_EQ(got->cache.next_position(), 50);
  EXPECT_EQ(got->cache.key_rotation(), KeyRotation::kCompacted);
  // Head 0..24 and tail 175..199, at compacted rotary positions 0..49.
  torch::Tensor kept = torch::cat({torch::arange(25, torch::kInt64), torch::arange(175, 200, torch::kInt64)});
  for (int64_t l = 0; l < model_->config().num_layers; ++l) {
    SCOPED_TRACE(l);
    EXPECT_TRUE(torch::equal(got->stats.kept_positions[l], want->stats.kept_positions[l]));
    EXPECT_TRUE(torch::equal(got->stats.kept_positions[l][1], kept));
    // Values are the full prefill's own: in deeper layers the tail has seen the middle, unlike a prefill of
    // the kept tokens alone.
    EXPECT_TRUE(torch::equal(got->cache.Values(l), full.Values(l).index_select(1, kept)));
  }
  // Layer 0 depends only on token and position: the same as prefilling the kept tokens at 0..49.
  EXPECT_LE(MaxDiff(got->cache.Keys(0), want->cache.Keys(0)), 1e-5);
  EXPECT_LE(MaxDiff(got->cache.Values(0), want->cache.Values(0)), 1e-5);
}

TEST_F(MethodsTest, FinchScoresAPrefilledContextAsOneChunk) {
  const CompressionInput by_ids = Input(300, 10);
  const KvCache full = FullPrefill(by_ids);
  CompressionInput by_kv = by_ids;
  by_kv.context.clear();
  by_kv.prefilled = &full;
  auto one_chunk = Run(Spec("finch", 4, {{"chunk_tokens", "300"}}), by_ids);
  // chunk_tokens does not apply, not even its check against the model window.
  auto small = Run(Spec("finch", 4, {{"chunk_tokens", "64"}}), by_kv);
  auto huge = Run(Spec("finch", 4, {{"chunk_tokens", "5000"}}), by_kv);
  ASSERT_TRUE(one_chunk.ok()) << one_chunk.status();
  ASSERT_TRUE(small.ok()) << small.status();
  ASSERT_TRUE(huge.ok()) << huge.status();
  EXPECT_EQ(small->stats.chunk_seconds.size(), 1u);
  for (int64_t l = 0; l < model_->config().num_layers; ++l) {
    EXPECT_TRUE(torch::equal(small->stats.kept_positions[l], one_chunk->stats.kept_positions[l]));
    EXPECT_TRUE(torch::equal(huge->stats.kept_positions[l], one_chunk->stats.kept_positions[l]));
  }
}

TEST_F(MethodsTest, ComposedPrefilledContextsAreIndexedByContextPosition) {
  // [prefix][doc1] and [prefix][doc2] prefilled on their own, composed without the second prefix: entries
  // carry their source positions (both parts restart at 0), but methods report indices in the context.
  const int64_t p = 6;
  CompressionInput a_in = Input(120, 0), b_in = Input(p, 0);
  for (int64_t i = 0; i < 90; ++i) b_in.context.push_back((i * 31 + 7) % 512);
  const KvCache a = FullPrefill(a_in), b = FullPrefill(b_in);
  auto composed = ComposeCaches({ComposePart{&a, 0}, ComposePart{&b, p}}, model_->rope());
  ASSERT_TRUE(composed.ok()) << composed.status();
  ASSERT_EQ(composed->length(), 210);
  CompressionInput in = Input(0, 12, /*protected_prefix=*/p);
  in.prefilled = &*composed;
  for (const std::string m : {"finch", "snapkv", "knorm"}) {
    SCOPED_TRACE(m);
    auto r = Run(Spec(m, 5), in);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stats.tokens_in, 210);
    EXPECT_EQ(r->stats.tokens_out, 42);
    for (const torch::Tensor& pos : r->stats.kept_positions) {
      for (int64_t h = 0; h < pos.size(0); ++h) {
        torch::Tensor row = pos[h];
        EXPECT_EQ(std::get<0>(at::_unique(row)).numel(), 42) << "no duplicates";
        EXPECT_TRUE(torch::equal(row, std::get<0>(row.sort()))) << "positions ascending";
        EXPECT_LT(row.max().item<int64_t>(), 210);
        EXPECT_TRUE(torch::equal(row.narrow(0, 0, p), torch::arange(p, torch::kInt64))) << "protected prefix kept";
      }
    }
  }
  CompressionSpec none;
  none.method = "none";
  auto r = Run(none, in);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cache.next_position(), 210);
  for (int64_t l = 0; l < model_->config().num_layers; ++l) {
    EXPECT_TRUE(torch::equal(r->stats.kept_positions[l][0], torch::arange(210, torch::kInt64)));
    EXPECT_TRUE(torch::equal(r->cache.Keys(l), composed->Keys(l)));
  }
  // The composition is untouched: its positions still restart with the second part.
  EXPECT_EQ(composed->Positions(0)[0][120].item<int64_t>(), p);
  EXPECT_EQ(composed->key_rotation(), KeyRotation::kCompacted);
}

TEST_F(MethodsTest, SnapKvOnAPrefilledContextVotesWithTheQuery) {
  const CompressionInput by_ids = Input(300, 12);
  const KvCache full = FullPrefill(by_ids);
  CompressionInput in = by_ids;
  in.context.clear();
  in.prefilled = &full;
  // A window wider than the query: its context tokens (the last 52) are kept, the query's rows vote.
  auto r = Run(Spec("snapkv", 4, {{"window", "64"}}), in);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats.tokens_out, 75);
  for (const torch::Tensor& pos : r->stats.kept_positions) {
    EXPECT_TRUE(torch::equal(pos[0].narrow(0, 75 - 52, 52), torch::arange(248, 300, torch::kInt64)));
  }
  // Without a query nothing can vote.
  in.suffix.clear();
  auto none = Run(Spec("snapkv", 4, {{"window", "64"}}), in);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument) << none.status();
  EXPECT_NE(none.status().message().find("query"), std::string::npos) << none.status();
}

TEST_F(MethodsTest, BadPrefilledContextsGetPreciseErrors) {
  const CompressionInput by_ids = Input(40, 5);
  const KvCache full = FullPrefill(by_ids);
  auto run = [&](const KvCache& prefilled, const std::string& method = "knorm",
                 std::function<void(CompressionInput&)> edit = nullptr) {
    CompressionInput in = by_ids;
    in.context.clear();
    in.prefilled = &prefilled;
    if (edit) edit(in);
    return Run(Spec(method, 2), in);
  };
  auto expect = [](const absl::StatusOr<CompressionResult>& r, absl::StatusCode code, const std::string& text) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_NE(r.status().message().find(text), std::string::npos) << r.status();
  };

  auto other_model = CopyCache(full);
  ASSERT_TRUE(other_model.ok());
  other_model->set_model_fingerprint("0123456789abcdef");
  for (const std::string m : {"finch", "snapkv", "streaming_llm", "knorm", "random", "truncate", "none"}) {
    SCOPED_TRACE(m);
    expect(run(*other_model, m), absl::StatusCode::kFailedPrecondition, "prefilled");
    expect(run(model_->NewCache(), m), absl::StatusCode::kInvalidArgument, "context: empty");
  }
  auto as_double = CopyCache(full, torch::kFloat64, torch::kCPU);
  ASSERT_TRUE(as_double.ok());
  expect(run(*as_double), absl::StatusCode::kFailedPrecondition, "prefilled");

  // Keys not at rotary positions 0..C-1: a prefill that started at position 5.
  KvCache shifted = model_->NewCache();
  shifted.set_next_position(5);
  ASSERT_TRUE(model_->Prefill(by_ids.context, shifted).ok());
  expect(run(shifted), absl::StatusCode::kInvalidArgument, "rotary positions");

  // Layers of different lengths.
  auto uneven = CopyCache(full);
  ASSERT_TRUE(uneven.ok());
  uneven->Reset(1, full.Keys(1).narrow(1, 0, 30), full.Values(1).narrow(1, 0, 30), full.Positions(1).narrow(1, 0, 30));
  expect(run(*uneven), absl::StatusCode::kInvalidArgument, "layer 1");

  expect(run(full, "knorm", [](CompressionInput& in) { in.context = {1, 2, 3}; }), absl::StatusCode::kInvalidArgument,
         "context");
  expect(run(full, "knorm", [](CompressionInput& in) { in.context.assign(40, 512); }),
         absl::StatusCode::kInvalidArgument, "vocabulary");
  expect(run(full, "knorm", [](CompressionInput& in) { in.protected_prefix = 41; }), absl::StatusCode::kOutOfRange,
         "protected_prefix");
  expect(run(full, "finch", [](CompressionInput& in) { in.suffix.clear(); }), absl::StatusCode::kInvalidArgument,
         "query");
  expect(run(full, "finch", [](CompressionInput& in) { in.keep_going = [] { return false; }; }),
         absl::StatusCode::kCancelled, "cancelled");
}

}  // namespace
}  // namespace kvc
