#include "compressor/model/vnni_gemv.h"

#include "compressor/model/int8_rows.h"
#include "gtest/gtest.h"

namespace kvc::vnni_gemv {
namespace {

struct Weight {
  torch::Tensor codes, scales, mins;  // [out, in] int64 0..15, [out, in / 32] float32 twice
  torch::Tensor Dense() const {
    const int64_t out = codes.size(0), in = codes.size(1);
    torch::Tensor c = codes.to(torch::kFloat32).reshape({out, in / kGroup, kGroup});
    return (c * scales.unsqueeze(-1) + mins.unsqueeze(-1)).reshape({out, in});
  }
};

Weight MakeWeight(int64_t out, int64_t in, uint64_t seed) {
  torch::manual_seed(seed);
  Weight w;
  w.codes = torch::randint(0, 16, {out, in}, torch::kInt64);
  w.codes.select(1, 0).fill_(15);  // the largest code is there
  // float16 values, as a Q4_1 file's (the kernel keeps its constants in float16).
  w.scales = (torch::rand({out, in / kGroup}) * 0.02 + 1e-3).to(torch::kFloat16).to(torch::kFloat32);
  w.mins = (-torch::rand({out, in / kGroup}) * 0.1).to(torch::kFloat16).to(torch::kFloat32);
  return w;
}

// The activations as the kernel reads them: first digit + second / 254, in float64 (exact).
torch::Tensor Digits(const Activations& a) {
  return a.codes.to(torch::kFloat64) + a.low.to(torch::kFloat64) / 254.0;
}

// The kernel's sum written with tensor operations: group sums of codes times quantized activations, then the
// scales and the minima's term.
torch::Tensor Reference(const torch::Tensor& x, const Weight& w) {
  const Activations a = QuantizeActivations(x);
  const int64_t n = x.size(0), in = x.size(1), out = w.codes.size(0), g = in / kGroup;
  torch::Tensor xq = Digits(a).reshape({n, 1, g, kGroup});
  torch::Tensor sums = (xq * w.codes.to(torch::kFloat64).reshape({1, out, g, kGroup})).sum(-1);  // [n, out, g]
  torch::Tensor dx = a.scales.to(torch::kFloat64).unsqueeze(1);
  torch::Tensor sx = dx * xq.sum(-1);
  return (sums * w.scales.to(torch::kFloat64) * dx + w.mins.to(torch::kFloat64) * sx).sum(-1);
}

// Each group is quantized as int8_rows quantizes a row; the sums are the groups'.
TEST(VnniGemvTest, QuantizesEachGroupAsAnInt8Row) {
  torch::Tensor x = torch::randn({2, 96});
  x[1].narrow(0, 32, 32).zero_();
  const Activations a = QuantizeActivations(x);
  const int8_rows::Rows rows = int8_rows::Quantize(x.reshape({6, kGroup}), int8_rows::Digits::kTwo);
  EXPECT_TRUE(torch::equal(a.codes, rows.codes.view({2, 96})));
  EXPECT_TRUE(torch::equal(a.low, rows.low.view({2, 96})));
  EXPECT_TRUE(torch::equal(a.scales, rows.scales.view({2, 3})));
  torch::Tensor codes = a.codes.view({2, 3, kGroup}).to(torch::kInt32);
  torch::Tensor low = a.low.view({2, 3, kGroup}).to(torch::kInt32);
  EXPECT_TRUE(torch::equal(a.code_sums, codes.sum(-1, false, torch::kInt32)));
  EXPECT_TRUE(torch::equal(a.low_sums, low.sum(-1, false, torch::kInt32)));
  EXPECT_TRUE(torch::allclose(a.sums.to(torch::kFloat64), Digits(a).view({2, 3, kGroup}).sum(-1)));
  // A group of zeros: scale 0, codes 0, sums 0.
  EXPECT_EQ(a.scales[1][1].item<float>(), 0.0f);
  EXPECT_EQ(a.code_sums[1][1].item<int32_t>(), 0);
  EXPECT_EQ(a.sums[1][1].item<float>(), 0.0f);
  // Within ~1/64000 of each group's largest value.
  torch::Tensor back = (Digits(a).view({2, 3, kGroup}) * a.scales.to(torch::kFloat64).unsqueeze(-1)).view({2, 96});
  torch::Tensor amax = x.abs().view({2, 3, kGroup}).amax(-1, true).expand({2, 3, kGroup}).reshape({2, 96});
  torch::Tensor bound = amax.to(torch::kFloat64) / 127.0 / 254.0 / 2 * 1.01 + 1e-9;
  EXPECT_TRUE(((back - x.to(torch::kFloat64)).abs() <= bound).all().item<bool>());
}

TEST(VnniGemvTest, ProductIsTheGroupSumsScaled) {
  if (!Available()) GTEST_SKIP() << "this CPU has no AVX512-VNNI; LinearWeight uses LibTorch's int4 kernel";
  // 48 rows = three tiles, 576 inputs = 18 groups (SmolLM2's width), and the widths of its other products.
  for (auto [out, in] : {std::pair<int64_t, int64_t>{48, 576}, {16, 32}, {64, 1536}, {960, 576}}) {
    SCOPED_TRACE(::testing::Message() << out << "x" << in);
    Weight w = MakeWeight(out, in, out + in);
    Packed p = PackQ4(w.codes, w.scales, w.mins);
    ASSERT_TRUE(p.defined());
    for (int64_t n : {1, 3}) {
      torch::Tensor x = torch::randn({n, in});
      torch::Tensor y = Product(x, p);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{n, out}));
      torch::Tensor ref = Reference(x, w);
      const double tol = 1e-5 * ref.abs().max().item<double>();
      EXPECT_LE((y.to(torch::kFloat64) - ref).abs().max().item<double>(), tol);
      // And within the activations' rounding (~1/64000) of the float product with the same weights.
      torch::Tensor exact = torch::mm(x, w.Dense().t());
      EXPECT_LE((y - exact).abs().max().item<float>(), 1e-4f * exact.abs().max().item<float>());
    }
  }
}

// Int8 groups (Q8_0's layout): codes -127..127, one float16 scale per group of 32.
TEST(VnniGemvTest, Int8ProductIsTheGroupSumsScaled) {
  if (!Available()) GTEST_SKIP() << "this CPU has no AVX512-VNNI; OutputHead uses LibTorch's int8 kernel";
  for (auto [out, in] : {std::pair<int64_t, int64_t>{48, 576}, {16, 32}, {4096, 576}}) {
    SCOPED_TRACE(::testing::Message() << out << "x" << in);
    torch::manual_seed(out + in);
    torch::Tensor codes = torch::randint(-127, 128, {out, in}, torch::kInt64);
    codes.select(1, 0).fill_(-127);  // both ends of the range
    codes.select(1, 1).fill_(127);
    torch::Tensor scales = (torch::rand({out, in / kGroup}) * 0.01 + 1e-4).to(torch::kFloat16).to(torch::kFloat32);
    Packed p = PackInt8(codes, scales);
    ASSERT_TRUE(p.defined());
    for (int64_t n : {1, 2}) {
      torch::Tensor x = torch::randn({n, in});
      const Activations a = QuantizeActivations(x);
      const int64_t g = in / kGroup;
      torch::Tensor wq = codes.to(torch::kFloat64).reshape({1, out, g, kGroup});
      torch::Tensor sums = (Digits(a).reshape({n, 1, g, kGroup}) * wq).sum(-1);
      torch::Tensor ref = (sums * scales.to(torch::kFloat64) * a.scales.to(torch::kFloat64).unsqueeze(1)).sum(-1);
      torch::Tensor y = Product(x, p);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{n, out}));
      EXPECT_LE((y.to(torch::kFloat64) - ref).abs().max().item<double>(), 1e-5 * ref.abs().max().item<double>());
      torch::Tensor dense =
          (codes.to(torch::kFloat32).reshape({out, g, kGroup}) * scales.unsqueeze(-1)).reshape({out, in});
      torch::Tensor exact = torch::mm(x, dense.t());
      EXPECT_LE((y - exact).abs().max().item<float>(), 1e-4f * exact.abs().max().item<float>());
    }
  }
}

TEST(VnniGemvTest, ReadsBfloat16AndStridedActivations) {
  if (!Available()) GTEST_SKIP() << "this CPU has no AVX512-VNNI";
  Weight w = MakeWeight(32, 64, 3);
  Packed p = PackQ4(w.codes, w.scales, w.mins);
  torch::Tensor x = torch::randn({1, 128}).view({1, 64, 2}).select(2, 0);  // every other element
  EXPECT_TRUE(torch::equal(Product(x, p), Product(x.contiguous(), p)));
  torch::Tensor xb = x.to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(Product(xb, p), Product(xb.to(torch::kFloat32), p)));
}

TEST(VnniGemvTest, PackNeedsTheCpu) {
  // Where the CPU lacks VNNI, the packers leave the weight undefined so that callers keep LibTorch's kernel.
  Weight w = MakeWeight(16, 32, 5);
  EXPECT_EQ(PackQ4(w.codes, w.scales, w.mins).defined(), Available());
  EXPECT_EQ(PackInt8(w.codes - 8, w.scales).defined(), Available());
}

// Int8RowSums' sums are the rows' integer products, with one digit or two, at a length that leaves a tail of
// a 64-byte load and a row count that leaves a tail of a block; mismatched operands are refused.
TEST(VnniGemvTest, Int8RowSumsAreTheRowProducts) {
  if (!Available()) GTEST_SKIP() << "this CPU has no AVX512-VNNI";
  torch::manual_seed(9);
  torch::Tensor codes = torch::randint(-128, 128, {3, 100}, torch::kInt8);
  torch::Tensor low = torch::randint(-127, 128, {3, 100}, torch::kInt8);
  torch::Tensor b = torch::randint(-127, 128, {37, 100}, torch::kInt8);
  auto want = [&](const torch::Tensor& a) { return torch::mm(a.to(torch::kInt64), b.to(torch::kInt64).t()); };
  torch::Tensor hi = torch::empty({3, 37}, torch::kInt32), lo = torch::empty({3, 37}, torch::kInt32);
  Int8RowSums(codes, low, b, RowSums(b), hi, lo);
  EXPECT_TRUE(torch::equal(hi.to(torch::kInt64), want(codes)));
  EXPECT_TRUE(torch::equal(lo.to(torch::kInt64), want(low)));
  torch::Tensor one = torch::empty({3, 37}, torch::kInt32);
  Int8RowSums(low, {}, b, RowSums(b), one, {});
  EXPECT_TRUE(torch::equal(one.to(torch::kInt64), want(low)));
  EXPECT_THROW(Int8RowSums(codes, low.narrow(0, 0, 2), b, RowSums(b), hi, lo), c10::Error);
  EXPECT_THROW(Int8RowSums(codes, low, b.narrow(1, 0, 64).contiguous(), RowSums(b), hi, lo), c10::Error);
  EXPECT_THROW(Int8RowSums(codes, low, b, RowSums(b), hi, lo.narrow(1, 0, 30)), c10::Error);
}

// kLibTorch turns the kernels off on any CPU; kAuto takes them where the CPU has them.
TEST(VnniGemvTest, KernelsChoice) {
  EXPECT_EQ(Usable(Kernels::kAuto), Available());
  EXPECT_FALSE(Usable(Kernels::kLibTorch));
  EXPECT_EQ(*ParseKernels("auto"), Kernels::kAuto);
  EXPECT_EQ(*ParseKernels("libtorch"), Kernels::kLibTorch);
  EXPECT_STREQ(KernelsName(Kernels::kLibTorch), "libtorch");
  EXPECT_STREQ(KernelsName(Kernels::kAuto), "auto");
  absl::StatusOr<Kernels> bad = ParseKernels("mkl");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("auto, libtorch"), std::string::npos);
}

}  // namespace
}  // namespace kvc::vnni_gemv
