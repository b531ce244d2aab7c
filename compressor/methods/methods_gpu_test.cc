// Every compression method on CUDA against the same method on the CPU, on a tiny random Llama: float32 on
// both sides must keep the same positions (GPU reductions round differently, so a few near-ties may flip),
// bfloat16 must still keep mostly the same ones, and a CUDA cache must serialize, load back onto the GPU
// and decode the same tokens. Skipped where no GPU is present.
#include <algorithm>
#include <iterator>

#include <torch/cuda.h>

#include "compressor/format/kv_cache_adapter.h"
#include "compressor/methods/compression.h"
#include "compressor/model/greedy.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

struct Models {
  std::unique_ptr<LlamaModel> cpu, cuda_f32, cuda_bf16;
};

class MethodsGpuTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    if (!torch::cuda::is_available()) return;
    std::string path = kvc::testing::TestData("tiny_llama");
    auto cpu = LlamaModel::Load(path);
    ModelOptions f32, bf16;
    f32.device = bf16.device = "cuda";
    f32.dtype = torch::kFloat32;
    bf16.dtype = torch::kBFloat16;
    auto g32 = LlamaModel::Load(path, f32);
    auto g16 = LlamaModel::Load(path, bf16);
    ASSERT_TRUE(cpu.ok() && g32.ok() && g16.ok());
    models_ = new Models{std::move(*cpu), std::move(*g32), std::move(*g16)};
  }
  static void TearDownTestSuite() {
    delete models_;
    models_ = nullptr;
  }
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU on this machine";
  }

  static CompressionInput Input(const LlamaModel* model) {
    CompressionInput in;
    in.model = model;
    for (int64_t i = 0; i < 600; ++i) in.context.push_back((i * 7919 + 13) % 512);
    for (int64_t i = 0; i < 24; ++i) in.suffix.push_back((i * 104729 + 5) % 512);
    in.protected_prefix = 8;
    return in;
  }

  static CompressionResult Run(const std::string& method, const LlamaModel* model) {
    CompressionSpec spec;
    spec.method = method;
    spec.ratio = method == "none" ? 0 : 4;
    if (method == "finch") spec.options["chunk_tokens"] = "128";  // several chunks
    auto m = CreateCompressionMethod(spec);
    EXPECT_TRUE(m.ok()) << m.status();
    auto r = (*m)->Compress(Input(model));
    EXPECT_TRUE(r.ok()) << method << ": " << r.status();
    return std::move(*r);
  }

  // Fraction of (layer, head, slot) kept positions that agree.
  static double Agreement(const CompressionStats& a, const CompressionStats& b) {
    EXPECT_EQ(a.tokens_out, b.tokens_out);
    double same = 0, total = 0;
    for (size_t l = 0; l < a.kept_positions.size(); ++l) {
      torch::Tensor x = a.kept_positions[l].cpu(), y = b.kept_positions[l].cpu();
      EXPECT_EQ(x.sizes(), y.sizes());
      for (int64_t h = 0; h < x.size(0); ++h) {
        std::vector<int64_t> u(x[h].data_ptr<int64_t>(), x[h].data_ptr<int64_t>() + x.size(1));
        std::vector<int64_t> v(y[h].data_ptr<int64_t>(), y[h].data_ptr<int64_t>() + y.size(1));
        std::vector<int64_t> both;
        std::set_intersection(u.begin(), u.end(), v.begin(), v.end(), std::back_inserter(both));
        same += static_cast<double>(both.size());
        total += static_cast<double>(u.size());
      }
    }
    return total == 0 ? 1 : same / total;
  }

  inline static Models* models_ = nullptr;
};

TEST_P(MethodsGpuTest, CudaKeepsWhatTheCpuKeeps) {
  const std::string& method = GetParam();
  CompressionResult cpu = Run(method, models_->cpu.get());
  CompressionResult f32 = Run(method, models_->cuda_f32.get());
  CompressionResult bf16 = Run(method, models_->cuda_bf16.get());
  ASSERT_EQ(f32.cache.num_layers(), cpu.cache.num_layers());
  EXPECT_TRUE(f32.cache.Keys(0).is_cuda());
  EXPECT_EQ(bf16.cache.Keys(0).scalar_type(), torch::kBFloat16);
  EXPECT_EQ(f32.cache.next_position(), cpu.cache.next_position());
  double a32 = Agreement(cpu.stats, f32.stats), a16 = Agreement(cpu.stats, bf16.stats);
  std::cout << method << ": kept positions agree with the CPU's: float32 " << a32 << ", bfloat16 " << a16 << "\n";
  EXPECT_GE(a32, 0.99);
  EXPECT_GE(a16, 0.85);
  if (a32 == 1.0) {
    for (int64_t l = 0; l < cpu.cache.num_layers(); ++l) {
      double diff = (f32.cache.Keys(l).cpu() - cpu.cache.Keys(l)).abs().max().item<double>();
      EXPECT_LE(diff, 1e-3) << "layer " << l;
    }
  }
}

TEST_P(MethodsGpuTest, CudaCacheRoundTripsAndDecodes) {
  const std::string& method = GetParam();
  const LlamaModel& model = *models_->cuda_f32;
  CompressionResult r = Run(method, &model);
  KvcProvenance prov;
  prov.model_name = "tiny_llama";
  prov.tokens_in = r.stats.tokens_in;
  auto bytes = EncodeKvCache(r.cache, prov);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  KvcDecodeOptions opts;
  opts.device = torch::Device("cuda");
  opts.expected_fingerprint = model.fingerprint();
  auto loaded = DecodeKvCache(*bytes, opts);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->cache.Keys(0).is_cuda());
  GreedyOptions g;
  g.max_new_tokens = 12;
  auto want = GenerateGreedy(model, Input(&model).suffix, r.cache, g);
  auto got = GenerateGreedy(model, Input(&model).suffix, loaded->cache, g);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*want, *got);
}

TEST_F(MethodsGpuTest, PrefillChunksSpanTheWindowOnCuda) {
  const LlamaModel& model = *models_->cuda_bf16;
  EXPECT_EQ(AutoPrefillChunk(model), std::clamp<int64_t>(model.config().max_position_embeddings, 512, 8192));
  CompressionResult r = Run("none", &model);
  EXPECT_EQ(r.stats.chunk_seconds.size(), 1u);  // 600 tokens, one chunk
}

INSTANTIATE_TEST_SUITE_P(AllMethods, MethodsGpuTest,
                         ::testing::Values("finch", "snapkv", "knorm", "streaming_llm", "random", "truncate", "none"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace kvc
