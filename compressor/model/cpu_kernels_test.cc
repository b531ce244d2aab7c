#include "compressor/model/cpu_kernels.h"

#include "gtest/gtest.h"

namespace kvc {
namespace {

TEST(CpuKernelsTest, EligibleOnlyForFloat32CpuTensors) {
  torch::Tensor f = torch::zeros({2}), b = torch::zeros({2}, torch::kBFloat16), u;
  EXPECT_TRUE(cpu_kernels::Eligible({&f, &f}));
  EXPECT_FALSE(cpu_kernels::Eligible({&f, &b}));
  EXPECT_FALSE(cpu_kernels::Eligible({&u}));
}

TEST(CpuKernelsTest, RmsNormMatchesTheComposedForm) {
  torch::manual_seed(3);
  // Widths that are whole vectors (96, 576) and ones with a tail (100); rows of any strides.
  for (int64_t d : {96, 100, 576}) {
    for (int64_t n : {1, 7, 300}) {
      for (bool transposed : {false, true}) {
        torch::Tensor x = transposed ? (torch::randn({d, n}) * 3).t() : torch::randn({n, d}) * 3;
        torch::Tensor w = torch::randn({d});
        torch::Tensor composed = w * (x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-5));
        torch::Tensor fused = cpu_kernels::RmsNorm(x, w, 1e-5);
        EXPECT_TRUE(fused.is_contiguous());
        EXPECT_TRUE(torch::allclose(fused, composed, 1e-6, 1e-6)) << "d=" << d << " n=" << n;
        // A strided row is read as its contiguous copy is.
        EXPECT_TRUE(torch::equal(fused, cpu_kernels::RmsNorm(x.contiguous(), w, 1e-5)));
      }
    }
  }
}

TEST(CpuKernelsTest, RotaryIsBitForBitTheComposedForm) {
  torch::manual_seed(4);
  const int64_t heads = 3, n = 5;
  // Half-widths below, at and past a vector of 16 floats, with and without a tail.
  for (int64_t D : {16, 64, 72, 128}) {
    torch::Tensor angles = torch::rand({n, D}) * 10;
    torch::Tensor cos = angles.cos(), sin = angles.sin();
    // [heads, n, D] as a transposed view of [n, heads, D] (the layout a projection leaves), and one whose
    // rows are strided too.
    for (torch::Tensor x : {torch::randn({n, heads, D}).transpose(0, 1),
                            torch::randn({D, n, heads}).permute({2, 1, 0})}) {
      torch::Tensor rotated = torch::cat({-x.narrow(-1, D / 2, D / 2), x.narrow(-1, 0, D / 2)}, -1);
      torch::Tensor composed = x * cos + rotated * sin;
      torch::Tensor fused = cpu_kernels::Rotary(x, cos, sin);
      EXPECT_TRUE(fused.is_contiguous());
      EXPECT_TRUE(torch::equal(fused, composed)) << "D=" << D << " row stride " << x.stride(2);
    }
  }
}

TEST(CpuKernelsTest, SiluMulMatchesTheComposedForm) {
  torch::manual_seed(5);
  for (int64_t n : {1, 64}) {
    torch::Tensor gu = torch::randn({n, 2 * 40}) * 4;
    torch::Tensor composed = torch::silu(gu.narrow(1, 0, 40)) * gu.narrow(1, 40, 40);
    EXPECT_TRUE(torch::allclose(cpu_kernels::SiluMul(gu), composed, 1e-6, 1e-6)) << "n=" << n;
  }
}

// A bfloat16 output is the float32 result rounded as LibTorch's conversion rounds, and a bfloat16 input is
// read exactly: what the composed form computes around a bfloat16 product.
TEST(CpuKernelsTest, Bfloat16OutputsAreTheFloat32ResultsConverted) {
  torch::manual_seed(6);
  torch::Tensor x = torch::randn({3, 96}) * 3, w = torch::randn({96});
  EXPECT_TRUE(torch::equal(cpu_kernels::RmsNorm(x, w, 1e-5, torch::kBFloat16),
                           cpu_kernels::RmsNorm(x, w, 1e-5).to(torch::kBFloat16)));
  torch::Tensor gu = (torch::randn({2, 2 * 48}) * 4).to(torch::kBFloat16);
  ASSERT_TRUE(cpu_kernels::SiluMulEligible(gu));
  EXPECT_TRUE(torch::equal(cpu_kernels::SiluMul(gu, torch::kBFloat16),
                           cpu_kernels::SiluMul(gu.to(torch::kFloat32)).to(torch::kBFloat16)));
  // float32 to float32 takes LibTorch's exp, so the same values agree to its last bit, not bit for bit.
  EXPECT_TRUE(torch::allclose(cpu_kernels::SiluMul(gu), cpu_kernels::SiluMul(gu.to(torch::kFloat32)), 1e-6, 1e-6));
  EXPECT_FALSE(cpu_kernels::SiluMulEligible(gu.t()));
  EXPECT_FALSE(cpu_kernels::SiluMulEligible(gu.to(torch::kFloat16)));
}

}  // namespace
}  // namespace kvc
