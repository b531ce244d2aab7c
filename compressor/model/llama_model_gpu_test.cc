// The CUDA path (bf16 weights and activations, SDPA on the GPU) against the float32 CPU forward. Skipped
// where no GPU is present; CI machines without one report it as skipped.
#include <torch/cuda.h>

#include "compressor/model/greedy.h"
#include "compressor/model/llama_model.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU on this machine";
  }
};

std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

void CompareCpuAndCuda(const std::string& path, torch::ScalarType dtype, int64_t n, double max_rel = 5e-2,
                       double min_top1 = 0.9) {
  auto cpu = LlamaModel::Load(path);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ModelOptions opts;
  opts.device = "cuda";
  opts.dtype = dtype;
  auto gpu = LlamaModel::Load(path, opts);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ((*cpu)->fingerprint(), (*gpu)->fingerprint());
  torch::Tensor ids = torch::randint(0, (*cpu)->config().vocab_size, {n}, torch::kInt64);
  torch::Tensor pos = torch::arange(n, torch::kInt64);
  KvCache c1 = (*cpu)->NewCache(), c2 = (*gpu)->NewCache();
  // Two chunks, so the GPU path also runs attention over an existing cache with a mask.
  std::vector<torch::Tensor> want, got;
  for (int64_t s : {int64_t{0}, n / 2}) {
    int64_t len = s == 0 ? n / 2 : n - n / 2;
    auto a = (*cpu)->Forward(ids.narrow(0, s, len), pos.narrow(0, s, len), c1, {Iota(len), 0});
    auto b = (*gpu)->Forward(ids.narrow(0, s, len), pos.narrow(0, s, len), c2, {Iota(len), 0});
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    want.push_back(a->logits);
    got.push_back(b->logits.cpu());
  }
  torch::Tensor w = torch::cat(want), g = torch::cat(got);
  double rel = ((w - g).abs().amax(1) / w.abs().amax(1)).max().item<double>();
  double top1 = (w.argmax(1) == g.argmax(1)).to(torch::kFloat64).mean().item<double>();
  std::cout << path << " " << c10::toString(dtype) << ": max normalized diff " << rel << ", top-1 agreement "
            << top1 << "\n";
  EXPECT_LE(rel, max_rel);
  EXPECT_GE(top1, min_top1);
}

TEST_F(GpuTest, TinyLlamaBf16MatchesCpu) {
  CompareCpuAndCuda(kvc::testing::TestData("tiny_llama"), torch::kBFloat16, 256);
}

TEST_F(GpuTest, TinyQwen2Fp16MatchesCpu) {
  CompareCpuAndCuda(kvc::testing::TestData("tiny_qwen2"), torch::kFloat16, 256);
}

TEST_F(GpuTest, SmolLM2Bf16MatchesCpu) {
  std::string gguf = kvc::testing::EnvOr("KVC_SMOLLM2_GGUF", "");
  if (gguf.empty()) GTEST_SKIP() << "KVC_SMOLLM2_GGUF not set";
  // Random tokens give flat logits, where bfloat16 rounding moves the argmax often: transformers' own
  // bfloat16 forward of this model, against its float32 one on an H100, differs by 0.04-0.07 (max
  // normalized) with 90-93% top-1 agreement on such inputs; kvc's, in three runs: 0.06-0.10, 90-93%.
  CompareCpuAndCuda(gguf, torch::kBFloat16, 1024, /*max_rel=*/0.15, /*min_top1=*/0.85);
}

TEST_F(GpuTest, SmolLM2Fp32MatchesCpu) {
  std::string gguf = kvc::testing::EnvOr("KVC_SMOLLM2_GGUF", "");
  if (gguf.empty()) GTEST_SKIP() << "KVC_SMOLLM2_GGUF not set";
  CompareCpuAndCuda(gguf, torch::kFloat32, 1024, /*max_rel=*/2e-3, /*min_top1=*/0.99);
}

}  // namespace
}  // namespace kvc
