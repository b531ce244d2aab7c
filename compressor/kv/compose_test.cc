// Composition of caches on a tiny random Llama: re-rotated keys equal keys computed at the composed
// positions, values and original positions are carried over, and incompatible caches are refused.
#include "compressor/kv/compose.h"

#include "compressor/model/llama_model.h"
#include "gtest/gtest.h"
#include "tests/support/tiny_llama_test.h"

namespace kvc {
namespace {

class ComposeTest : public kvc::testing::TinyLlamaTest {
 protected:

  static std::vector<int64_t> Tokens(int64_t n, int64_t salt) {
    std::vector<int64_t> t;
    for (int64_t i = 0; i < n; ++i) t.push_back((i * 7919 + salt * 104729 + 13) % 512);
    return t;
  }

  // A cache holding `tokens` prefilled from position `start`.
  static KvCache Prefilled(const std::vector<int64_t>& tokens, int64_t start = 0) {
    KvCache c = model_->NewCache();
    c.set_next_position(start);
    auto logits = model_->Prefill(tokens, c);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return c;
  }

  static double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
    return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  }

};

TEST_F(ComposeTest, TwoCachesAreReRotatedToConsecutivePositions) {
  const std::vector<int64_t> t1 = Tokens(10, 1), t2 = Tokens(7, 2);
  KvCache a = Prefilled(t1);
  KvCache b = Prefilled(t2);
  // What t2's layer-0 keys look like when computed at the positions they take after a.
  KvCache b_after_a = Prefilled(t2, /*start=*/10);

  auto composed = ComposeCaches({&a, &b}, model_->rope());
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->length(), 17);
  EXPECT_EQ(composed->next_position(), 17);
  EXPECT_EQ(composed->key_rotation(), KeyRotation::kCompacted);
  EXPECT_EQ(composed->model_fingerprint(), model_->fingerprint());
  EXPECT_FALSE(composed->model_fingerprint().empty());

  // Layer 0 keys depend only on token and position, so they must match a direct computation.
  torch::Tensor k0 = composed->Keys(0);
  EXPECT_LE(MaxDiff(k0.narrow(1, 0, 10), a.Keys(0)), 1e-5);
  EXPECT_LE(MaxDiff(k0.narrow(1, 10, 7), b_after_a.Keys(0)), 1e-5);
  // And they did move: b's keys at positions 0.. are not those at 10..
  EXPECT_GT(MaxDiff(b.Keys(0), b_after_a.Keys(0)), 1e-3);

  for (int64_t l = 0; l < model_->config().num_layers; ++l) {
    SCOPED_TRACE(l);
    // Values are never touched; the first part's keys keep their positions.
    EXPECT_TRUE(torch::equal(composed->Values(l), torch::cat({a.Values(l), b.Values(l)}, 1)));
    EXPECT_LE(MaxDiff(composed->Keys(l).narrow(1, 0, 10), a.Keys(l)), 1e-6);
    // Original positions, offset-free: each part counts from its own start.
    torch::Tensor want = torch::cat({torch::arange(10, torch::kInt64), torch::arange(7, torch::kInt64)})
                             .unsqueeze(0)
                             .expand({model_->config().num_kv_heads, 17});
    EXPECT_TRUE(torch::equal(composed->Positions(l), want));
    // Rotary positions are the compacted indices.
    EXPECT_TRUE(torch::equal(composed->RotaryPositions(l)[0], torch::arange(17, torch::kInt64)));
  }

  // The inputs are untouched.
  EXPECT_EQ(a.length(), 10);
  EXPECT_EQ(b.length(), 7);
  EXPECT_EQ(b.key_rotation(), KeyRotation::kOriginal);

  // The composition decodes: one more token attends to all 17 entries.
  auto out = model_->Forward(torch::tensor({int64_t{5}}), torch::tensor({composed->next_position()}), *composed,
                             ForwardOptions{{0}, 0});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(composed->length(), 18);
  EXPECT_TRUE(torch::isfinite(out->logits).all().item<bool>());
}

TEST_F(ComposeTest, SingleSparseCacheIsCompacted) {
  // Keep every other entry of a prefill, at their original positions 0, 2, 4, ...
  const std::vector<int64_t> t = Tokens(12, 3);
  KvCache full = Prefilled(t);
  KvCache sparse = model_->NewCache();
  torch::Tensor keep = torch::arange(0, 12, 2, torch::kInt64);
  for (int64_t l = 0; l < full.num_layers(); ++l) {
    sparse.Reset(l, full.Keys(l).index_select(1, keep), full.Values(l).index_select(1, keep),
                 full.Positions(l).index_select(1, keep));
  }
  sparse.set_next_position(12);

  auto composed = ComposeCaches({&sparse}, model_->rope());
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->next_position(), 6);
  EXPECT_EQ(composed->key_rotation(), KeyRotation::kCompacted);
  std::vector<int64_t> kept_tokens;
  for (int64_t i = 0; i < 12; i += 2) kept_tokens.push_back(t[i]);
  KvCache direct = Prefilled(kept_tokens);
  EXPECT_LE(MaxDiff(composed->Keys(0), direct.Keys(0)), 1e-5);
  EXPECT_TRUE(torch::equal(composed->Positions(0), sparse.Positions(0)));

  // A compacted cache composes to an exact copy.
  auto again = ComposeCaches({&*composed}, model_->rope());
  ASSERT_TRUE(again.ok()) << again.status();
  for (int64_t l = 0; l < composed->num_layers(); ++l) {
    EXPECT_TRUE(torch::equal(again->Keys(l), composed->Keys(l)));
    EXPECT_TRUE(torch::equal(again->Values(l), composed->Values(l)));
  }
}

TEST_F(ComposeTest, EmptyCachesContributeNothing) {
  KvCache empty = model_->NewCache();
  KvCache a = Prefilled(Tokens(5, 4));
  auto composed = ComposeCaches({&empty, &a, &empty}, model_->rope());
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->length(), 5);
  EXPECT_EQ(composed->next_position(), 5);
  EXPECT_LE(MaxDiff(composed->Keys(1), a.Keys(1)), 1e-6);
}

// The entries [from, length) of every layer of `c`, as a cache of their own that keeps c's key rotation
// bookkeeping: positions are the rotary positions the keys carry, so that the result is kOriginal.
KvCache Tail(const KvCache& c, int64_t from) {
  KvCache out(c.shape());
  for (int64_t l = 0; l < c.num_layers(); ++l) {
    const int64_t n = c.length(l) - from;
    out.Reset(l, c.Keys(l).narrow(1, from, n), c.Values(l).narrow(1, from, n),
              c.RotaryPositions(l).narrow(1, from, n));
  }
  out.set_model_fingerprint(c.model_fingerprint());
  return out;
}

TEST_F(ComposeTest, SkippedLeadingEntriesAreLeftOutAndTheRestReRotated) {
  // Two documents that share a prefix, each prefilled on its own: [prefix][doc1] and [prefix][doc2].
  const int64_t p = 5;
  const std::vector<int64_t> prefix = Tokens(p, 10), doc1 = Tokens(9, 11), doc2 = Tokens(6, 12);
  std::vector<int64_t> t1 = prefix, t2 = prefix;
  t1.insert(t1.end(), doc1.begin(), doc1.end());
  t2.insert(t2.end(), doc2.begin(), doc2.end());
  KvCache a = Prefilled(t1);
  KvCache b = Prefilled(t2);

  auto composed = ComposeCaches({ComposePart{&a, 0}, ComposePart{&b, p}}, model_->rope());
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->length(), 14 + 6);
  EXPECT_EQ(composed->next_position(), 20);
  EXPECT_EQ(composed->key_rotation(), KeyRotation::kCompacted);

  // The same as composing with a cache that only ever held b's entries from p on, at their positions.
  KvCache b_tail = Tail(b, p);
  auto want = ComposeCaches({&a, &b_tail}, model_->rope());
  ASSERT_TRUE(want.ok()) << want.status();
  for (int64_t l = 0; l < model_->config().num_layers; ++l) {
    SCOPED_TRACE(l);
    EXPECT_LE(MaxDiff(composed->Keys(l), want->Keys(l)), 1e-5);
    EXPECT_TRUE(torch::equal(composed->Values(l), want->Values(l)));
    EXPECT_TRUE(torch::equal(composed->Values(l).narrow(1, 14, 6), b.Values(l).narrow(1, p, 6)));
    // Original positions within b: doc2 starts at p there.
    EXPECT_TRUE(torch::equal(composed->Positions(l)[0].narrow(0, 14, 6), torch::arange(p, p + 6, torch::kInt64)));
  }
  // Layer 0 keys depend only on token and position: doc2's keys are those computed right after t1.
  KvCache doc2_after_t1 = Prefilled(doc2, /*start=*/14);
  EXPECT_LE(MaxDiff(composed->Keys(0).narrow(1, 14, 6), doc2_after_t1.Keys(0)), 1e-5);
  EXPECT_LE(MaxDiff(composed->Keys(0).narrow(1, 0, 14), a.Keys(0)), 1e-6);

  // A skip of a whole cache leaves nothing of it; the inputs are untouched.
  auto all_skipped = ComposeCaches({ComposePart{&a, 0}, ComposePart{&b, b.length()}}, model_->rope());
  ASSERT_TRUE(all_skipped.ok()) << all_skipped.status();
  EXPECT_EQ(all_skipped->length(), 14);
  EXPECT_EQ(b.length(), 11);
  EXPECT_EQ(b.key_rotation(), KeyRotation::kOriginal);
}

TEST_F(ComposeTest, SkipWorksOnCompactedSources) {
  // A compacted source: every other entry of a prefill, re-rotated to 0, 1, 2, ... by a composition.
  const std::vector<int64_t> t = Tokens(16, 13);
  KvCache full = Prefilled(t);
  KvCache sparse = model_->NewCache();
  torch::Tensor keep = torch::arange(0, 16, 2, torch::kInt64);
  for (int64_t l = 0; l < full.num_layers(); ++l) {
    sparse.Reset(l, full.Keys(l).index_select(1, keep), full.Values(l).index_select(1, keep),
                 full.Positions(l).index_select(1, keep));
  }
  auto compacted = ComposeCaches({&sparse}, model_->rope());
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  ASSERT_EQ(compacted->key_rotation(), KeyRotation::kCompacted);
  ASSERT_EQ(compacted->length(), 8);

  // [first][compacted skip 3]: the kept tokens 6, 8, ..., 14 of t (entries 3..7) land at 7..11.
  KvCache first = Prefilled(Tokens(7, 14));
  const int64_t skip = 3;
  auto composed = ComposeCaches({ComposePart{&first, 0}, ComposePart{&*compacted, skip}}, model_->rope());
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_EQ(composed->length(), 12);
  std::vector<int64_t> kept_tokens;
  for (int64_t i = 2 * skip; i < 16; i += 2) kept_tokens.push_back(t[i]);
  KvCache direct = Prefilled(kept_tokens, /*start=*/7);
  EXPECT_LE(MaxDiff(composed->Keys(0).narrow(1, 7, 5), direct.Keys(0)), 1e-5);

  KvCache tail = Tail(*compacted, skip);
  auto want = ComposeCaches({&first, &tail}, model_->rope());
  ASSERT_TRUE(want.ok()) << want.status();
  for (int64_t l = 0; l < model_->config().num_layers; ++l) {
    SCOPED_TRACE(l);
    EXPECT_LE(MaxDiff(composed->Keys(l), want->Keys(l)), 1e-5);
    EXPECT_TRUE(torch::equal(composed->Values(l), want->Values(l)));
    // Positions still say where in t each entry came from.
    EXPECT_TRUE(torch::equal(composed->Positions(l)[0].narrow(0, 7, 5), torch::arange(6, 16, 2, torch::kInt64)));
  }

  // A skip on the first part moves its kept keys down to 0..: the same keys as a prefill of those tokens.
  auto alone = ComposeCaches({ComposePart{&*compacted, skip}}, model_->rope());
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_EQ(alone->length(), 5);
  EXPECT_LE(MaxDiff(alone->Keys(0), Prefilled(kept_tokens).Keys(0)), 1e-5);
}

TEST_F(ComposeTest, RefusesBadSkips) {
  KvCache a = Prefilled(Tokens(4, 15));
  KvCache b = Prefilled(Tokens(6, 16));
  auto negative = ComposeCaches({ComposePart{&a, 0}, ComposePart{&b, -1}}, model_->rope());
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(negative.status().message().find("caches[1]"), std::string::npos) << negative.status();
  EXPECT_NE(negative.status().message().find("skip_leading"), std::string::npos) << negative.status();

  auto past = ComposeCaches({ComposePart{&a, 0}, ComposePart{&b, 7}}, model_->rope());
  EXPECT_EQ(past.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(past.status().message().find("caches[1]"), std::string::npos) << past.status();
  EXPECT_NE(past.status().message().find("skip_leading"), std::string::npos) << past.status();

  // Past only one layer's length (layers of unequal length, as mid-forward).
  KvCache uneven = Prefilled(Tokens(6, 17));
  uneven.Reset(1, uneven.Keys(1).narrow(1, 0, 2), uneven.Values(1).narrow(1, 0, 2),
               uneven.Positions(1).narrow(1, 0, 2));
  auto layer = ComposeCaches({ComposePart{&uneven, 3}}, model_->rope());
  EXPECT_EQ(layer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(layer.status().message().find("layer 1"), std::string::npos) << layer.status();

  auto null = ComposeCaches({ComposePart{&a, 0}, ComposePart{nullptr, 0}}, model_->rope());
  EXPECT_EQ(null.status().code(), absl::StatusCode::kInvalidArgument);
  auto none = ComposeCaches(std::vector<ComposePart>{}, model_->rope());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ComposeTest, CopyIsDeep) {
  KvCache a = Prefilled(Tokens(6, 5));
  a.set_key_rotation(KeyRotation::kCompacted);
  auto copy = CopyCache(a);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->next_position(), 6);
  EXPECT_EQ(copy->key_rotation(), KeyRotation::kCompacted);
  EXPECT_EQ(copy->model_fingerprint(), a.model_fingerprint());
  for (int64_t l = 0; l < a.num_layers(); ++l) {
    EXPECT_TRUE(torch::equal(copy->Keys(l), a.Keys(l)));
    EXPECT_TRUE(torch::equal(copy->Values(l), a.Values(l)));
    EXPECT_TRUE(torch::equal(copy->Positions(l), a.Positions(l)));
    // Own storage: appending to the copy cannot write into the source's spare capacity.
    EXPECT_NE(copy->Keys(l).data_ptr(), a.Keys(l).data_ptr());
  }
  auto as_double = CopyCache(a, torch::kFloat64, torch::kCPU);
  ASSERT_TRUE(as_double.ok()) << as_double.status();
  EXPECT_EQ(as_double->Keys(0).scalar_type(), torch::kFloat64);
  EXPECT_EQ(as_double->shape().dtype, torch::kFloat64);
}

TEST_F(ComposeTest, RefusesIncompatibleCaches) {
  KvCache a = Prefilled(Tokens(4, 6));
  auto none = ComposeCaches({}, model_->rope());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  auto null = ComposeCaches({&a, nullptr}, model_->rope());
  EXPECT_EQ(null.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(null.status().message().find("caches[1]"), std::string::npos) << null.status();

  KvCache other_model = Prefilled(Tokens(4, 7));
  other_model.set_model_fingerprint("0123456789abcdef");
  auto fp = ComposeCaches({&a, &a, &other_model}, model_->rope());
  EXPECT_EQ(fp.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(fp.status().message().find("caches[2]"), std::string::npos) << fp.status();
  EXPECT_NE(fp.status().message().find("fingerprint"), std::string::npos) << fp.status();

  KvCacheShape shape = a.shape();
  struct Case {
    const char* what;
    KvCacheShape shape;
  };
  std::vector<Case> cases;
  cases.push_back({"layer count", shape});
  cases.back().shape.num_layers += 1;
  cases.push_back({"kv_heads", shape});
  cases.back().shape.kv_heads += 1;
  cases.push_back({"head_dim", shape});
  cases.back().shape.head_dim *= 2;
  cases.push_back({"dtype", shape});
  cases.back().shape.dtype = torch::kFloat64;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    KvCache odd(c.shape);
    odd.set_model_fingerprint(a.model_fingerprint());
    auto r = ComposeCaches({&a, &odd}, model_->rope());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(r.status().message().find("caches[1]"), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find(c.what), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace kvc
