// Dequantization of every supported ggml type against gguf-py's reference dequantizer, on blocks written by
// tests/tools/make_fixtures.py (quants.gguf holds q.<TYPE> and ref.<TYPE> side by side).
#include "compressor/model/ggml_dequant.h"

#include "compressor/model/gguf_file.h"
#include "compressor/model/gguf_weights.h"
#include "compressor/util/half.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

class DequantTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DequantTest, MatchesGgufPy) {
  auto gguf = GgufFile::Open(kvc::testing::TestData("quants.gguf"));
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  const GgufTensorInfo* q = (*gguf)->FindTensor("q." + GetParam());
  const GgufTensorInfo* ref = (*gguf)->FindTensor("ref." + GetParam());
  ASSERT_NE(q, nullptr);
  ASSERT_NE(ref, nullptr);
  auto ours = GgufWeights::Dequantize(*q);
  auto want = GgufWeights::Dequantize(*ref);
  ASSERT_TRUE(ours.ok()) << ours.status();
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_EQ(ours->sizes(), want->sizes());
  double scale = std::max(1.0, want->abs().max().item<double>());
  double diff = (*ours - *want).abs().max().item<double>();
  EXPECT_LE(diff, 1e-6 * scale) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantTest,
                         ::testing::Values("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K",
                                           "Q3_K", "Q4_K", "Q5_K", "Q6_K"));

TEST(HalfToFloatTest, SpecialValues) {
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x0001), 5.9604644775390625e-08f);  // smallest subnormal
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7C00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
}

TEST(DequantizeBlocksTest, UnknownTypeIsUnimplemented) {
  uint8_t block[66] = {};
  float out[256];
  absl::Status s = DequantizeBlocks(16 /* IQ2_XXS */, block, 1, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("IQ2_XXS"), std::string::npos) << s;
}

}  // namespace
}  // namespace kvc
