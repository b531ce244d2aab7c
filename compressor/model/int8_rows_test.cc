#include "compressor/model/int8_rows.h"

#include "compressor/model/vnni_gemv.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

// The composed reference: scale = absmax / 127, codes = round-half-even(x * (127 / absmax)), and the second
// digit round-half-even((x * (127 / absmax) - codes) * kLowBase).
struct Digits2 {
  torch::Tensor codes, low, scales;
};
Digits2 Reference(const torch::Tensor& x) {
  torch::Tensor xf = x.to(torch::kFloat32);
  torch::Tensor amax = xf.abs().amax(1, /*keepdim=*/true);
  torch::Tensor inv = torch::where(amax > 0, 127.0f / amax, torch::zeros_like(amax));
  torch::Tensor v = xf * inv;
  torch::Tensor hi = torch::round(v);
  torch::Tensor lo = torch::round((v - hi) * int8_rows::kLowBase);
  return {hi.to(torch::kInt8), lo.to(torch::kInt8), (amax / 127.0f).squeeze(1)};
}

TEST(Int8RowsTest, QuantizeRoundsEachRowByItsLargestValue) {
  torch::manual_seed(3);
  for (int64_t k : {1, 15, 16, 17, 100, 576, 1536}) {
    SCOPED_TRACE("k=" + std::to_string(k));
    torch::Tensor x = torch::randn({37, k}) * torch::rand({37, 1}) * 10;
    x[3].zero_();  // a row of zeros
    int8_rows::Rows got = int8_rows::Quantize(x);
    Digits2 want = Reference(x);
    EXPECT_TRUE(torch::equal(got.codes, want.codes));
    EXPECT_FALSE(got.low.defined());
    EXPECT_TRUE(torch::equal(got.scales, want.scales));
    EXPECT_EQ(got.scales[3].item<float>(), 0.0f);
    // Each row's largest magnitude is a code of +-127, so it comes back to within its scale's rounding.
    torch::Tensor top = got.codes.to(torch::kInt32).abs().amax(1);
    EXPECT_TRUE((top.narrow(0, 0, 3) == 127).all().item<bool>());
    torch::Tensor back = got.codes.to(torch::kFloat32) * got.scales.unsqueeze(1);
    EXPECT_TRUE(((back - x).abs().amax(1) <= got.scales * 0.5001f + 1e-6f).all().item<bool>());
    // Two digits: the same first digit, and the second takes the rounding down by a factor of kLowBase.
    int8_rows::Rows two = int8_rows::Quantize(x, int8_rows::Digits::kTwo);
    EXPECT_TRUE(torch::equal(two.codes, want.codes));
    EXPECT_TRUE(torch::equal(two.low, want.low));
    EXPECT_TRUE(torch::equal(two.scales, want.scales));
    torch::Tensor back2 = (two.codes.to(torch::kFloat32) + two.low.to(torch::kFloat32) / int8_rows::kLowBase) *
                          two.scales.unsqueeze(1);
    EXPECT_TRUE(((back2 - x).abs().amax(1) <= got.scales * (0.5001f / int8_rows::kLowBase) + 1e-5f * top.to(
                     torch::kFloat32) * got.scales).all().item<bool>());
  }
}

TEST(Int8RowsTest, QuantizeReadsStridedAndBfloat16Rows) {
  torch::manual_seed(4);
  torch::Tensor wide = torch::randn({20, 300});
  torch::Tensor x = wide.narrow(1, 7, 200);  // rows 300 apart
  EXPECT_TRUE(torch::equal(int8_rows::Quantize(x).codes, int8_rows::Quantize(x.contiguous()).codes));
  torch::Tensor b = torch::randn({9, 64}).to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(int8_rows::Quantize(b).codes, Reference(b).codes));
  EXPECT_TRUE(torch::equal(int8_rows::Quantize(x, int8_rows::Digits::kTwo).low,
                           int8_rows::Quantize(x.contiguous(), int8_rows::Digits::kTwo).low));
}

// Ties round to even, as torch::round does: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
TEST(Int8RowsTest, QuantizeRoundsTiesToEven) {
  torch::Tensor x = torch::tensor({{127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f}});
  int8_rows::Rows got = int8_rows::Quantize(x);
  EXPECT_TRUE(torch::equal(got.codes, torch::tensor({{127, 0, 2, 2, 0, -2, -2}}, torch::kInt8)));
  EXPECT_EQ(got.scales[0].item<float>(), 1.0f);
}

// Weight rows with their code sums (on a CPU with VNNI) take products of a few rows on vnni_gemv's kernel,
// the others oneDNN's GEMM: the same exact sums either way.
TEST(Int8RowsTest, ProductScalesTheExactIntegerSums) {
  torch::manual_seed(5);
  auto sums = [](const torch::Tensor& a, const torch::Tensor& b) {
    return torch::mm(a.to(torch::kInt64), b.to(torch::kInt64).t()).to(torch::kFloat32);
  };
  // The last shape takes several blocks of rows (int8_rows.cc's buffer holds ~580 rows of 900 sums, twice).
  for (auto [n, m, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 37, 64}, {2, 3, 5}, {7, 16, 100},
                         {int8_rows::kFewRows, 577, 576}, {300, 129, 576}, {3000, 900, 24}}) {
    torch::Tensor x = torch::randn({n, k});
    int8_rows::Rows a = int8_rows::Quantize(x);
    int8_rows::Rows b = int8_rows::Quantize(torch::randn({m, k}) * 0.1);
    torch::Tensor bias = torch::randn({m});
    torch::Tensor scale = b.scales.unsqueeze(0) * a.scales.unsqueeze(1);
    torch::Tensor want = sums(a.codes, b.codes) * scale;
    int8_rows::Rows a2 = int8_rows::Quantize(x, int8_rows::Digits::kTwo);
    torch::Tensor want2 = (sums(a2.codes, b.codes) + sums(a2.low, b.codes) * (1.0f / int8_rows::kLowBase)) * scale;
    for (bool code_sums : {false, true}) {
      if (code_sums && !vnni_gemv::Available()) continue;
      if (code_sums) b.code_sums = vnni_gemv::RowSums(b.codes);
      SCOPED_TRACE(std::to_string(n) + "x" + std::to_string(m) + "x" + std::to_string(k) +
                   (code_sums ? " with code sums" : ""));
      torch::Tensor got = int8_rows::Product(a, b, {});
      EXPECT_EQ(got.scalar_type(), torch::kFloat32);
      EXPECT_TRUE(torch::equal(got, want));
      EXPECT_TRUE(torch::equal(int8_rows::Product(a, b, bias), want + bias));
      // Two digits: the second digit's sums join at 1 / kLowBase.
      EXPECT_TRUE(torch::equal(int8_rows::Product(a2, b, {}), want2));
      EXPECT_TRUE(torch::equal(int8_rows::Product(a2, b, bias), want2 + bias));
    }
  }
}

TEST(Int8RowsTest, EmptyProductsAreEmpty) {
  int8_rows::Rows w = int8_rows::Quantize(torch::randn({5, 8}));
  EXPECT_EQ(int8_rows::Product(int8_rows::Quantize(torch::zeros({0, 8}), int8_rows::Digits::kTwo), w, {}).sizes(),
            (std::vector<int64_t>{0, 5}));
  int8_rows::Rows none = int8_rows::Quantize(torch::zeros({0, 8}));
  EXPECT_EQ(int8_rows::Product(int8_rows::Quantize(torch::randn({3, 8})), none, {}).sizes(),
            (std::vector<int64_t>{3, 0}));
}

// Against the float product: one digit rounds each operand by up to half a step of its row's largest value,
// so the product of random rows lands within about a percent of the largest output (576 terms of independent
// rounding errors: ~1% of a typical output, measured 1.2% of the largest). Two digits of the activations
// leave only the weights' rounding: against the float product with the rounded weights, ~1e-5.
TEST(Int8RowsTest, ProductIsCloseToTheFloatProduct) {
  torch::manual_seed(6);
  torch::Tensor x = torch::randn({64, 576});
  torch::Tensor w = torch::randn({192, 576}) * 0.05;
  int8_rows::Rows w8 = int8_rows::Quantize(w);
  torch::Tensor got = int8_rows::Product(int8_rows::Quantize(x), w8, {});
  torch::Tensor want = torch::mm(x, w.t());
  const double rel = ((got - want).abs().max() / want.abs().max()).item<double>();
  EXPECT_LE(rel, 3e-2);
  EXPECT_GT(rel, 0);
  torch::Tensor w_rounded = w8.codes.to(torch::kFloat32) * w8.scales.unsqueeze(1);
  torch::Tensor got2 = int8_rows::Product(int8_rows::Quantize(x, int8_rows::Digits::kTwo), w8, {});
  torch::Tensor want2 = torch::mm(x, w_rounded.t());
  const double rel2 = ((got2 - want2).abs().max() / want2.abs().max()).item<double>();
  EXPECT_LE(rel2, 1e-4);
}

}  // namespace
}  // namespace kvc
