// The LibTorch forward against transformers on tiny random models (tests/tools/make_fixtures.py): Llama
// (sharded safetensors), Qwen2 (attention bias, tied embeddings), llama3, yarn and linear rope scaling, and
// the tiny Llama again from GGUF (exercising metadata, naming and Q/K un-permutation).
#include "compressor/model/llama_model.h"

#include <string>

#include <torch/cuda.h>

#include "compressor/model/greedy.h"
#include "compressor/model/safetensors_weights.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

struct Reference {
  torch::Tensor input_ids, logits, greedy_prompt, greedy_tokens;
};

Reference LoadReference(const std::string& path) {
  auto w = SafetensorsWeights::Open(path);
  EXPECT_TRUE(w.ok()) << w.status();
  Reference r;
  r.input_ids = (*w)->Load("input_ids").value().clone();
  r.logits = (*w)->Load("logits").value().clone();
  r.greedy_prompt = (*w)->Load("greedy_prompt").value().clone();
  r.greedy_tokens = (*w)->Load("greedy_tokens").value().clone();
  return r;
}

std::vector<int64_t> ToVector(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kInt64).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Max abs difference relative to the largest reference logit (at least 1).
double RelMaxDiff(const torch::Tensor& ours, const torch::Tensor& ref) {
  double scale = std::max(1.0, ref.abs().max().item<double>());
  return (ours - ref).abs().max().item<double>() / scale;
}

struct Case {
  std::string model;      // path under testdata
  std::string reference;  // reference.safetensors under testdata
};

class TinyModelTest : public ::testing::TestWithParam<Case> {};

TEST_P(TinyModelTest, LogitsMatchTransformers) {
  auto model = LlamaModel::Load(kvc::testing::TestData(GetParam().model));
  ASSERT_TRUE(model.ok()) << model.status();
  Reference ref = LoadReference(kvc::testing::TestData(GetParam().reference));
  const int64_t n = ref.input_ids.size(0);
  KvCache cache = (*model)->NewCache();
  auto out = (*model)->Forward(ref.input_ids, torch::arange(n, torch::kInt64), cache, {Iota(n), 0});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_LE(RelMaxDiff(out->logits, ref.logits), 1e-5);
  EXPECT_EQ(cache.length(), n);
}

TEST_P(TinyModelTest, ChunkedPrefillEqualsOnePass) {
  auto model = LlamaModel::Load(kvc::testing::TestData(GetParam().model));
  ASSERT_TRUE(model.ok()) << model.status();
  Reference ref = LoadReference(kvc::testing::TestData(GetParam().reference));
  const int64_t n = ref.input_ids.size(0);
  KvCache one = (*model)->NewCache();
  auto full = (*model)->Forward(ref.input_ids, torch::arange(n, torch::kInt64), one, {Iota(n), 0});
  ASSERT_TRUE(full.ok()) << full.status();
  KvCache chunked = (*model)->NewCache();
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < n; start += 64) {
    int64_t len = std::min<int64_t>(64, n - start);
    auto out = (*model)->Forward(ref.input_ids.narrow(0, start, len),
                                 torch::arange(start, start + len, torch::kInt64), chunked, {Iota(len), 0});
    ASSERT_TRUE(out.ok()) << out.status();
    parts.push_back(out->logits);
  }
  EXPECT_LE((torch::cat(parts, 0) - full->logits).abs().max().item<double>(), 1e-4);
  EXPECT_LE((chunked.Keys(1) - one.Keys(1)).abs().max().item<double>(), 1e-4);
}

TEST_P(TinyModelTest, GreedyMatchesTransformers) {
  auto model = LlamaModel::Load(kvc::testing::TestData(GetParam().model));
  ASSERT_TRUE(model.ok()) << model.status();
  Reference ref = LoadReference(kvc::testing::TestData(GetParam().reference));
  KvCache cache = (*model)->NewCache();
  GreedyOptions opts;
  opts.max_new_tokens = ref.greedy_tokens.size(0);
  auto tokens = GenerateGreedy(**model, ToVector(ref.greedy_prompt), cache, opts);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, ToVector(ref.greedy_tokens));
}

TEST_P(TinyModelTest, QueryCaptureReturnsPostRopeQueries) {
  auto model = LlamaModel::Load(kvc::testing::TestData(GetParam().model));
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& c = (*model)->config();
  KvCache cache = (*model)->NewCache();
  torch::Tensor ids = torch::arange(20, torch::kInt64);
  auto out = (*model)->Forward(ids, torch::arange(20, torch::kInt64), cache, {{}, 5});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FALSE(out->logits.defined());
  ASSERT_EQ(static_cast<int64_t>(out->queries.size()), c.num_layers);
  EXPECT_EQ(out->queries[0].sizes(), (c10::IntArrayRef{c.num_heads, 5, c.head_dim}));
}

// A forward that reads nothing past the last layer stops there after appending its K/V: the cache and the
// captured queries are those of a forward that asks for logits, and the next chunk's logits are unchanged.
TEST_P(TinyModelTest, ForwardWithoutOutputsFillsTheSameCache) {
  auto model = LlamaModel::Load(kvc::testing::TestData(GetParam().model));
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& c = (*model)->config();
  torch::Tensor ids = torch::arange(3, 43, torch::kInt64) % c.vocab_size;
  torch::Tensor pos = torch::arange(40, torch::kInt64);
  KvCache with = (*model)->NewCache(), without = (*model)->NewCache();
  auto read = (*model)->Forward(ids, pos, with, {{39}, 4});
  auto unread = (*model)->Forward(ids, pos, without, {{}, 4});
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE(unread.ok()) << unread.status();
  EXPECT_FALSE(unread->logits.defined());
  ASSERT_EQ(unread->queries.size(), read->queries.size());
  for (int64_t l = 0; l < c.num_layers; ++l) {
    EXPECT_TRUE(torch::equal(without.Keys(l), with.Keys(l))) << "layer " << l;
    EXPECT_TRUE(torch::equal(without.Values(l), with.Values(l))) << "layer " << l;
    EXPECT_TRUE(torch::equal(unread->queries[l], read->queries[l])) << "layer " << l;
  }
  torch::Tensor next = torch::arange(50, 58, torch::kInt64) % c.vocab_size;
  torch::Tensor next_pos = torch::arange(40, 48, torch::kInt64);
  auto a = (*model)->Forward(next, next_pos, with, {Iota(8), 0});
  auto b = (*model)->Forward(next, next_pos, without, {Iota(8), 0});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(torch::equal(a->logits, b->logits));
  // A residual captured after the last layer still needs it.
  KvCache hidden_cache = (*model)->NewCache();
  ForwardOptions fo;
  fo.capture_hidden_after = c.num_layers;
  auto hidden = (*model)->Forward(ids, pos, hidden_cache, fo);
  ASSERT_TRUE(hidden.ok()) << hidden.status();
  ASSERT_TRUE(hidden->hidden.defined());
  EXPECT_EQ(hidden->hidden.sizes(), (c10::IntArrayRef{40, c.hidden_size}));
}

INSTANTIATE_TEST_SUITE_P(
    Models, TinyModelTest,
    ::testing::Values(Case{"tiny_llama", "tiny_llama/reference.safetensors"},
                      Case{"tiny_qwen2", "tiny_qwen2/reference.safetensors"},
                      Case{"tiny_llama3", "tiny_llama3/reference.safetensors"},
                      Case{"tiny_yarn", "tiny_yarn/reference.safetensors"},
                      Case{"tiny_linear", "tiny_linear/reference.safetensors"},
                      Case{"tiny_llama.gguf", "tiny_llama_gguf_reference.safetensors"}),
    [](const auto& info) {
      std::string name = info.param.model;
      for (char& ch : name) if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return name;
    });

TEST(LlamaModelTest, ConfigFromSafetensorsDirectory) {
  auto model = LlamaModel::Load(kvc::testing::TestData("tiny_qwen2"));
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& c = (*model)->config();
  EXPECT_EQ(c.architecture, "qwen2");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
}

TEST(LlamaModelTest, FingerprintIsStableAndModelSpecific) {
  auto a1 = LlamaModel::Load(kvc::testing::TestData("tiny_llama"));
  auto a2 = LlamaModel::Load(kvc::testing::TestData("tiny_llama"));
  auto b = LlamaModel::Load(kvc::testing::TestData("tiny_qwen2"));
  ASSERT_TRUE(a1.ok() && a2.ok() && b.ok());
  EXPECT_EQ((*a1)->fingerprint().size(), 64u);
  EXPECT_EQ((*a1)->fingerprint(), (*a2)->fingerprint());
  EXPECT_NE((*a1)->fingerprint(), (*b)->fingerprint());
}

TEST(LlamaModelTest, RejectsBadForwardInput) {
  auto model = LlamaModel::Load(kvc::testing::TestData("tiny_llama"));
  ASSERT_TRUE(model.ok()) << model.status();
  KvCache cache = (*model)->NewCache();
  auto pos = torch::arange(2, torch::kInt64);
  auto oov = (*model)->Forward(torch::tensor({1, 512}, torch::kInt64), pos, cache);
  EXPECT_EQ(oov.status().code(), absl::StatusCode::kInvalidArgument);
  auto neg = (*model)->Forward(torch::tensor({-1, 3}, torch::kInt64), pos, cache);
  EXPECT_EQ(neg.status().code(), absl::StatusCode::kInvalidArgument);
  auto empty = (*model)->Forward(torch::empty({0}, torch::kInt64), torch::empty({0}, torch::kInt64), cache);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_logits = (*model)->Forward(torch::tensor({1, 2}, torch::kInt64), pos, cache, {{2}, 0});
  EXPECT_EQ(bad_logits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.length(), 0);  // nothing half-appended
}

TEST(LlamaModelTest, CudaWithoutGpuIsFailedPrecondition) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present";
  ModelOptions opts;
  opts.device = "cuda";
  auto model = LlamaModel::Load(kvc::testing::TestData("tiny_llama"), opts);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition) << model.status();
}

// bfloat16 on CPU (what a CUDA server computes in) against transformers' float32 logits: within bfloat16
// rounding, the same bound the CUDA bfloat16 test uses.
TEST(LlamaModelTest, Bfloat16OnCpuMatchesTransformersWithinRounding) {
  ModelOptions opts;
  opts.dtype = torch::kBFloat16;
  auto model = LlamaModel::Load(kvc::testing::TestData("tiny_llama"), opts);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->dtype(), torch::kBFloat16);
  Reference ref = LoadReference(kvc::testing::TestData("tiny_llama/reference.safetensors"));
  const int64_t n = ref.input_ids.size(0);
  KvCache cache = (*model)->NewCache();
  EXPECT_EQ(cache.shape().dtype, torch::kBFloat16);
  auto out = (*model)->Forward(ref.input_ids, torch::arange(n, torch::kInt64), cache, {Iota(n), 0});
  ASSERT_TRUE(out.ok()) << out.status();
  torch::Tensor got = out->logits.to(torch::kFloat32);
  const double rel = ((got - ref.logits).abs().amax(1) / ref.logits.abs().amax(1)).max().item<double>();
  const double top1 = (got.argmax(1) == ref.logits.argmax(1)).to(torch::kFloat64).mean().item<double>();
  EXPECT_LE(rel, 5e-2);
  EXPECT_GE(top1, 0.9);
}

TEST(LlamaModelTest, Float16OnCpuIsInvalidArgument) {
  ModelOptions opts;
  opts.dtype = torch::kFloat16;
  auto model = LlamaModel::Load(kvc::testing::TestData("tiny_llama"), opts);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument) << model.status();
}

}  // namespace
}  // namespace kvc
