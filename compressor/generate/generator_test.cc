// The generator on a tiny random Llama (vocab 512) with a small byte-level tokenizer built here to fit that
// vocabulary: greedy parity with GenerateGreedy, seeded sampling, stop strings and streaming, cancellation,
// cache handling and request validation. Also the sampler and the stop-string filter on their own.
#include "compressor/generate/generator.h"

#include <cmath>
#include <map>
#include <thread>

#include "compressor/generate/sampler.h"
#include "compressor/generate/stop_strings.h"
#include "compressor/kv/compose.h"
#include "compressor/model/greedy.h"
#include "compressor/tokenizer/bpe_tokenizer.h"
#include "compressor/tokenizer/byte_level.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

constexpr int32_t kVocab = 512;

// ids 0-2: <unk>, <s>, </s> (special; </s> is eos); 3-97: printable ASCII; 98-511: two-character tokens of
// lowercase letters and space. Every id decodes to readable text, so generated text is easy to reason about.
std::unique_ptr<Tokenizer> MakeTokenizer(std::optional<int32_t> eos = 2) {
  BpeTokenizerSpec spec;
  ByteLevelMap map;
  spec.vocab.assign(3, "");
  for (int c = 0x20; c <= 0x7e; ++c) {
    std::string s;
    map.Encode(std::string(1, static_cast<char>(c)), &s);
    spec.vocab.push_back(s);
  }
  const std::string letters = "abcdefghijklmnopqrstuvwxyz ";
  for (char a : letters) {
    for (char b : letters) {
      if (spec.vocab.size() == kVocab) break;
      std::string s;
      map.Encode(std::string{a, b}, &s);
      spec.vocab.push_back(s);
    }
  }
  spec.added_tokens.push_back({"<unk>", 0, /*special=*/true});
  spec.added_tokens.push_back({"<s>", 1, /*special=*/true});
  spec.added_tokens.push_back({"</s>", 2, /*special=*/true});
  spec.bos_id = 1;
  spec.eos_id = eos;
  auto tok = BpeTokenizer::Create(std::move(spec));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return std::move(tok).value();
}

class GeneratorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = LlamaModel::Load(kvc::testing::TestData("tiny_llama"));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->release();
    ASSERT_EQ(model_->config().vocab_size, kVocab);
    tokenizer_ = MakeTokenizer().release();
    ASSERT_EQ(tokenizer_->vocab_size(), kVocab);
    auto g = Generator::Create(model_, tokenizer_);
    ASSERT_TRUE(g.ok()) << g.status();
    generator_ = g->release();
    context_ = new KvCache(model_->NewCache());
    ASSERT_TRUE(model_->Prefill(Tokens(30, 1), *context_).ok());
  }
  static void TearDownTestSuite() {
    delete context_;
    delete generator_;
    delete tokenizer_;
    delete model_;
  }

  static std::vector<int64_t> Tokens(int64_t n, int64_t salt) {
    std::vector<int64_t> t;
    for (int64_t i = 0; i < n; ++i) t.push_back((i * 7919 + salt * 104729 + 13) % kVocab);
    return t;
  }

  static GenerationRequest Request(int64_t max_tokens = 24) {
    GenerationRequest r;
    r.caches = {context_};
    r.suffix = Tokens(6, 2);
    r.sampling.max_tokens = max_tokens;
    r.sampling.stop_on_eos = false;  // a random model may emit </s> anywhere
    return r;
  }

  struct Streamed {
    std::vector<GenerationPiece> pieces;
    std::string Text() const {
      std::string t;
      for (const GenerationPiece& p : pieces) t += p.text;
      return t;
    }
  };

  static absl::StatusOr<GenerationResult> Run(const GenerationRequest& r, Streamed* streamed = nullptr) {
    if (streamed == nullptr) return generator_->Generate(r);
    return generator_->Generate(r, [streamed](const GenerationPiece& p) {
      streamed->pieces.push_back(p);
      return true;
    });
  }

  static LlamaModel* model_;
  static Tokenizer* tokenizer_;
  static Generator* generator_;
  static KvCache* context_;
};

LlamaModel* GeneratorTest::model_ = nullptr;
Tokenizer* GeneratorTest::tokenizer_ = nullptr;
Generator* GeneratorTest::generator_ = nullptr;
KvCache* GeneratorTest::context_ = nullptr;

TEST_F(GeneratorTest, GreedyMatchesGenerateGreedy) {
  GenerationRequest req = Request(24);
  auto r = Run(req);
  ASSERT_TRUE(r.ok()) << r.status();

  auto copy = CopyCache(*context_);
  ASSERT_TRUE(copy.ok()) << copy.status();
  GreedyOptions greedy;
  greedy.max_new_tokens = 24;
  auto want = GenerateGreedy(*model_, req.suffix, *copy, greedy);
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(r->tokens, *want);
  EXPECT_EQ(r->finish_reason, "length");
  EXPECT_EQ(r->cached_tokens, 30);
  EXPECT_EQ(r->prompt_tokens, 6);

  std::vector<int32_t> ids(r->tokens.begin(), r->tokens.end());
  auto text = tokenizer_->Decode(ids, DecodeOptions{/*skip_special=*/true});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(r->text, *text);

  EXPECT_GT(r->timings.time_to_first_token_seconds, 0);
  EXPECT_GE(r->timings.prefill_seconds, 0);
  EXPECT_GT(r->timings.decode_seconds, 0);
  EXPECT_NEAR(r->timings.mean_seconds_per_token, r->timings.decode_seconds / 23, 1e-12);
}

TEST_F(GeneratorTest, LeavesTheInputCacheUntouched) {
  std::vector<torch::Tensor> k, v, p;
  for (int64_t l = 0; l < context_->num_layers(); ++l) {
    k.push_back(context_->Keys(l).clone());
    v.push_back(context_->Values(l).clone());
    p.push_back(context_->Positions(l).clone());
  }
  const int64_t next = context_->next_position();
  ASSERT_TRUE(Run(Request(10)).ok());
  ASSERT_TRUE(Run(Request(10)).ok());
  EXPECT_EQ(context_->length(), 30);
  EXPECT_EQ(context_->next_position(), next);
  EXPECT_EQ(context_->key_rotation(), KeyRotation::kOriginal);
  for (int64_t l = 0; l < context_->num_layers(); ++l) {
    EXPECT_TRUE(torch::equal(context_->Keys(l), k[l]));
    EXPECT_TRUE(torch::equal(context_->Values(l), v[l]));
    EXPECT_TRUE(torch::equal(context_->Positions(l), p[l]));
  }
}

TEST_F(GeneratorTest, SeededSamplingIsReproducible) {
  GenerationRequest req = Request(20);
  req.sampling.temperature = 0.8;
  req.sampling.top_p = 0.9;
  req.sampling.top_k = 20;
  req.sampling.seed = 42;
  auto a = Run(req);
  auto b = Run(req);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_EQ(a->text, b->text);

  int differing = 0;
  for (uint64_t seed : {1, 2, 3, 4, 5}) {
    req.sampling.seed = seed;
    auto c = Run(req);
    ASSERT_TRUE(c.ok()) << c.status();
    differing += c->tokens != a->tokens;
  }
  EXPECT_GE(differing, 4);

  // Sampling really samples: it is not the greedy sequence.
  auto greedy = Run(Request(20));
  ASSERT_TRUE(greedy.ok());
  EXPECT_NE(a->tokens, greedy->tokens);
}

TEST_F(GeneratorTest, TopKOneIsGreedy) {
  GenerationRequest req = Request(16);
  req.sampling.temperature = 1.3;
  req.sampling.top_k = 1;
  req.sampling.seed = 9;
  auto sampled = Run(req);
  auto greedy = Run(Request(16));
  ASSERT_TRUE(sampled.ok()) << sampled.status();
  ASSERT_TRUE(greedy.ok()) << greedy.status();
  EXPECT_EQ(sampled->tokens, greedy->tokens);
}

TEST_F(GeneratorTest, MaxTokensIsRespectedAndPiecesMatchTheResult) {
  for (int64_t n : {1, 5, 17}) {
    SCOPED_TRACE(n);
    Streamed s;
    auto r = Run(Request(n), &s);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(static_cast<int64_t>(r->tokens.size()), n);
    EXPECT_EQ(r->finish_reason, "length");
    ASSERT_EQ(s.pieces.size(), r->tokens.size());
    for (size_t i = 0; i < s.pieces.size(); ++i) {
      EXPECT_EQ(s.pieces[i].index, static_cast<int64_t>(i));
      EXPECT_EQ(s.pieces[i].token_id, r->tokens[i]);
    }
    EXPECT_EQ(s.Text(), r->text);
  }
}

TEST_F(GeneratorTest, StopStringsCutTheTextAndAreNeverStreamed) {
  auto full = Run(Request(40));
  ASSERT_TRUE(full.ok()) << full.status();
  const std::string& text = full->text;
  ASSERT_GE(text.size(), 20u) << text;
  // A stop string taken from the middle of the greedy text, so that it spans tokens.
  const std::string stop = text.substr(text.size() / 2, 3);
  const size_t cut = text.find(stop);

  GenerationRequest req = Request(40);
  req.sampling.stop = {"this will not occur", stop};
  Streamed s;
  auto r = Run(req, &s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->finish_reason, "stop");
  EXPECT_EQ(r->text, text.substr(0, cut));
  EXPECT_EQ(s.Text(), r->text);
  EXPECT_EQ(s.Text().find(stop), std::string::npos);
  // Tokens stop at the one completing the stop string: decoding them reaches the stop, one fewer does not.
  ASSERT_LE(r->tokens.size(), full->tokens.size());
  EXPECT_TRUE(std::equal(r->tokens.begin(), r->tokens.end(), full->tokens.begin()));
  std::vector<int32_t> ids(r->tokens.begin(), r->tokens.end());
  auto decoded = tokenizer_->Decode(ids, DecodeOptions{true});
  ASSERT_TRUE(decoded.ok());
  EXPECT_NE(decoded->find(stop), std::string::npos);
  auto shorter = tokenizer_->Decode(absl::MakeConstSpan(ids).subspan(0, ids.size() - 1), DecodeOptions{true});
  ASSERT_TRUE(shorter.ok());
  EXPECT_EQ(shorter->find(stop), std::string::npos);
}

TEST_F(GeneratorTest, HeldBackTextIsReleasedWhenNoStopCompletes) {
  auto full = Run(Request(30));
  ASSERT_TRUE(full.ok()) << full.status();
  // Starts like the generated text's tail but never completes: everything must still come out, in order.
  GenerationRequest req = Request(30);
  req.sampling.stop = {full->text.substr(full->text.size() - 2) + "\x7f\x7f"};
  Streamed s;
  auto r = Run(req, &s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->finish_reason, "length");
  EXPECT_EQ(r->text, full->text);
  EXPECT_EQ(s.Text(), full->text);
  // The last piece carried the held-back tail.
  EXPECT_GE(s.pieces.back().text.size(), 2u);
}

TEST_F(GeneratorTest, StopsAtEos) {
  auto full = Run(Request(20));
  ASSERT_TRUE(full.ok()) << full.status();
  // A tokenizer whose eos is the greedy sequence's 4th token.
  const int64_t eos = full->tokens[3];
  std::unique_ptr<Tokenizer> tok = MakeTokenizer(static_cast<int32_t>(eos));
  auto gen = Generator::Create(model_, tok.get());
  ASSERT_TRUE(gen.ok()) << gen.status();
  GenerationRequest req = Request(20);
  req.sampling.stop_on_eos = true;
  auto r = (*gen)->Generate(req);
  ASSERT_TRUE(r.ok()) << r.status();
  // The model config's eos (2) counts as well.
  size_t first = 0;
  while (full->tokens[first] != eos && full->tokens[first] != 2) ++first;
  EXPECT_EQ(r->finish_reason, "eos");
  EXPECT_EQ(r->tokens, std::vector<int64_t>(full->tokens.begin(), full->tokens.begin() + first + 1));
  req.sampling.stop_on_eos = false;
  auto unstopped = (*gen)->Generate(req);
  ASSERT_TRUE(unstopped.ok());
  EXPECT_EQ(unstopped->tokens, full->tokens);
}

TEST_F(GeneratorTest, KeepGoingCancels) {
  GenerationRequest req = Request(20);
  int calls = 0;
  // The first poll is before the prefill, then one before each token after the first.
  req.keep_going = [&calls] { return ++calls <= 4; };
  Streamed s;
  auto r = Run(req, &s);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_EQ(s.pieces.size(), 4u);

  req.keep_going = [] { return false; };
  Streamed none;
  EXPECT_EQ(Run(req, &none).status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(none.pieces.empty());
}

TEST_F(GeneratorTest, OnPieceFalseCancels) {
  int seen = 0;
  auto r = generator_->Generate(Request(20), [&seen](const GenerationPiece&) { return ++seen < 3; });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_EQ(seen, 3);
}

TEST_F(GeneratorTest, RefusesCachesOfAnotherModel) {
  auto other = CopyCache(*context_);
  ASSERT_TRUE(other.ok());
  other->set_model_fingerprint(std::string(64, 'f'));
  GenerationRequest req = Request(4);
  req.caches = {context_, &*other};
  auto r = Run(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("caches[1]"), std::string::npos) << r.status();

  other->set_model_fingerprint("");
  req.caches = {&*other};
  r = Run(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("fingerprint"), std::string::npos) << r.status();
}

TEST_F(GeneratorTest, ComposesSeveralCaches) {
  KvCache second = model_->NewCache();
  ASSERT_TRUE(model_->Prefill(Tokens(12, 3), second).ok());
  GenerationRequest req = Request(12);
  req.caches = {context_, &second};
  Streamed s;
  auto r = Run(req, &s);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cached_tokens, 42);
  EXPECT_EQ(r->tokens.size(), 12u);
  EXPECT_EQ(s.Text(), r->text);

  // The same as decoding greedily from the composition by hand.
  auto composed = ComposeCaches({context_, &second}, model_->rope());
  ASSERT_TRUE(composed.ok()) << composed.status();
  GreedyOptions greedy;
  greedy.max_new_tokens = 12;
  auto want = GenerateGreedy(*model_, req.suffix, *composed, greedy);
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(r->tokens, *want);
  EXPECT_EQ(second.length(), 12);
}

TEST_F(GeneratorTest, ValidatesRequests) {
  auto expect = [](const GenerationRequest& req, absl::StatusCode code, const std::string& needle) {
    auto r = Run(req);
    EXPECT_EQ(r.status().code(), code) << needle << ": " << r.status();
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
  };
  GenerationRequest req = Request();
  req.caches.clear();
  expect(req, absl::StatusCode::kInvalidArgument, "caches");
  req = Request();
  req.caches = {nullptr};
  expect(req, absl::StatusCode::kInvalidArgument, "caches[0]");
  req = Request();
  req.suffix.clear();
  expect(req, absl::StatusCode::kInvalidArgument, "prompt: empty");
  req = Request();
  req.suffix.push_back(kVocab);
  expect(req, absl::StatusCode::kInvalidArgument, "vocabulary");
  req = Request();
  req.suffix[0] = -1;
  expect(req, absl::StatusCode::kInvalidArgument, "vocabulary");

  const std::vector<std::pair<std::function<void(SamplingOptions&)>, std::string>> bad = {
      {[](SamplingOptions& s) { s.temperature = -0.5; }, "temperature"},
      {[](SamplingOptions& s) { s.temperature = std::nan(""); }, "temperature"},
      {[](SamplingOptions& s) { s.top_p = 0; }, "top_p"},
      {[](SamplingOptions& s) { s.top_p = 1.01; }, "top_p"},
      {[](SamplingOptions& s) { s.top_k = -1; }, "top_k"},
      {[](SamplingOptions& s) { s.max_tokens = 0; }, "max_tokens"},
      {[](SamplingOptions& s) { s.stop = {"ok", ""}; }, "stop[1]"},
      {[](SamplingOptions& s) { s.stop = {"\xff"}; }, "stop[0]"},
  };
  for (const auto& [mutate, field] : bad) {
    SCOPED_TRACE(field);
    req = Request();
    mutate(req.sampling);
    expect(req, absl::StatusCode::kInvalidArgument, field);
  }

  // 30 cached + 6 suffix positions leave room for 1024 - 36 + 1 tokens.
  req = Request(1024 - 36 + 2);
  expect(req, absl::StatusCode::kOutOfRange, "max_tokens can be at most 989");

  EXPECT_EQ(Generator::Create(nullptr, tokenizer_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Generator::Create(model_, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  GeneratorOptions options;
  options.prefill_chunk_tokens = 0;
  EXPECT_EQ(Generator::Create(model_, tokenizer_, options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(GeneratorTest, ConcurrentRequestsOnTheSameCacheAreIndependent) {
  auto serial = Run(Request(12));
  ASSERT_TRUE(serial.ok()) << serial.status();
  // Both threads decode from context_ at once; each must see only its own appended tokens.
  std::vector<absl::StatusOr<GenerationResult>> results(2, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&results, t] { results[t] = Run(Request(12)); });
  }
  for (std::thread& th : threads) th.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, serial->tokens);
  }
  EXPECT_EQ(context_->length(), 30);
}

TEST_F(GeneratorTest, ChunkedPrefillGivesTheSameTokens) {
  GeneratorOptions options;
  options.prefill_chunk_tokens = 2;
  auto chunked = Generator::Create(model_, tokenizer_, options);
  ASSERT_TRUE(chunked.ok());
  auto a = (*chunked)->Generate(Request(10));
  auto b = Run(Request(10));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->tokens, b->tokens);
}

// --- The sampler and the stop-string filter on their own.

TEST(TokenSamplerTest, GreedyTiesGoToTheLowestId) {
  TokenSampler s(SamplerParams{}, 8);
  EXPECT_EQ(s.Next(torch::tensor({0.f, 3.f, 1.f, 3.f, 2.f, 0.f, 0.f, 0.f})), 1);
  // Ids past the limit are never chosen, even when best.
  TokenSampler limited(SamplerParams{}, 3);
  EXPECT_EQ(limited.Next(torch::tensor({0.f, 1.f, 2.f, 9.f})), 2);
  TokenSampler sampling(SamplerParams{1.0, 0, 1.0, 3}, 3);
  for (int i = 0; i < 200; ++i) EXPECT_LT(sampling.Next(torch::tensor({0.f, 1.f, 2.f, 9.f})), 3);
}

TEST(TokenSamplerTest, TopKAndTopPRestrictTheDraw) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
  torch::Tensor logits = torch::tensor({0.5f, 0.3f, 0.15f, 0.05f}).log();
  std::map<int64_t, int> counts;
  TokenSampler top_p(SamplerParams{1.0, 0, 0.7, 11}, 4);
  for (int i = 0; i < 4000; ++i) ++counts[top_p.Next(logits)];
  // The nucleus for 0.7 is {0, 1}, renormalized to 0.625 / 0.375.
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_NEAR(counts[0] / 4000.0, 0.625, 0.03);

  counts.clear();
  TokenSampler top_k(SamplerParams{1.0, 3, 1.0, 12}, 4);
  for (int i = 0; i < 4000; ++i) ++counts[top_k.Next(logits)];
  EXPECT_EQ(counts.count(3), 0u);
  EXPECT_NEAR(counts[2] / 4000.0, 0.15 / 0.95, 0.03);

  counts.clear();
  TokenSampler all(SamplerParams{1.0, 0, 1.0, 13}, 4);
  for (int i = 0; i < 8000; ++i) ++counts[all.Next(logits)];
  EXPECT_NEAR(counts[3] / 8000.0, 0.05, 0.015);

  // A NaN never wins and never breaks the draw.
  TokenSampler nan(SamplerParams{1.0, 0, 1.0, 14}, 3);
  for (int i = 0; i < 100; ++i) EXPECT_NE(nan.Next(torch::tensor({0.f, std::nanf(""), 0.f})), 1);
}

TEST(StopStringFilterTest, HoldsPossibleStartsAndCutsAtTheStop) {
  StopStringFilter f({"END", "xyz"});
  EXPECT_EQ(f.Add("hello E"), "hello ");  // "E" may start "END"
  EXPECT_EQ(f.Add("N"), "");               // "EN" still may
  EXPECT_EQ(f.Add("x"), "EN");             // "ENx" is no "END", but "x" may start "xyz"
  EXPECT_FALSE(f.stopped());
  EXPECT_EQ(f.Add("y"), "");
  EXPECT_EQ(f.Add("zz tail"), "");
  EXPECT_TRUE(f.stopped());
  EXPECT_EQ(f.Add("more"), "");
  EXPECT_EQ(f.Flush(), "");

  StopStringFilter g({"ab"});
  EXPECT_EQ(g.Add("xxa"), "xx");
  EXPECT_EQ(g.Flush(), "a");

  StopStringFilter none({});
  EXPECT_EQ(none.Add("anything"), "anything");
}

}  // namespace
}  // namespace kvc
