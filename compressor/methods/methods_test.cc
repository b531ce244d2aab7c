// Behaviour of every method on a tiny random model: budgets, protected prefix, positions, memory bound,
// cancellation and precise errors for bad specs.
#include <set>

#include "compressor/methods/compression.h"
#include "gtest/gtest.h"
#include "tests/support/tiny_llama_test.h"

namespace kvc {
namespace {

class MethodsTest : public kvc::testing::TinyLlamaTest {
 protected:

  CompressionInput Input(int64_t context_len, int64_t query_len, int64_t protected_prefix = 0) {
    CompressionInput in;
    in.model = model_;
    for (int64_t i = 0; i < context_len; ++i) in.context.push_back((i * 7919 + 13) % 512);
    for (int64_t i = 0; i < query_len; ++i) in.suffix.push_back((i * 104729 + 5) % 512);
    in.protected_prefix = protected_prefix;
    return in;
  }

  absl::StatusOr<CompressionResult> Run(CompressionSpec spec, const CompressionInput& in) {
    auto method = CreateCompressionMethod(spec);
    if (!method.ok()) return method.status();
    return (*method)->Compress(in);
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

}  // namespace
}  // namespace kvc
