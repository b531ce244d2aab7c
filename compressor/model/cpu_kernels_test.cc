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
  for (int64_t n : {1, 7, 300}) {
    // A transposed view: the kernel reads any strides.
    torch::Tensor x = (torch::randn({96, n}) * 3).t();
    torch::Tensor w = torch::randn({96});
    torch::Tensor composed = w * (x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-5));
    torch::Tensor fused = cpu_kernels::RmsNorm(x, w, 1e-5);
    EXPECT_TRUE(fused.is_contiguous());
    EXPECT_TRUE(torch::allclose(fused, composed, 1e-6, 1e-6)) << "n=" << n;
  }
}

TEST(CpuKernelsTest, RotaryIsBitForBitTheComposedForm) {
  torch::manual_seed(4);
  const int64_t heads = 3, n = 5, D = 16;
  // [heads, n, D] as a transposed view of [n, heads, D], the layout a projection leaves.
  torch::Tensor x = torch::randn({n, heads, D}).transpose(0, 1);
  torch::Tensor angles = torch::rand({n, D}) * 10;
  torch::Tensor cos = angles.cos(), sin = angles.sin();
  torch::Tensor rotated = torch::cat({-x.narrow(-1, D / 2, D / 2), x.narrow(-1, 0, D / 2)}, -1);
  torch::Tensor composed = x * cos + rotated * sin;
  torch::Tensor fused = cpu_kernels::Rotary(x, cos, sin);
  EXPECT_TRUE(fused.is_contiguous());
  EXPECT_TRUE(torch::equal(fused, composed));
}

TEST(CpuKernelsTest, SiluMulMatchesTheComposedForm) {
  torch::manual_seed(5);
  for (int64_t n : {1, 64}) {
    torch::Tensor gu = torch::randn({n, 2 * 40}) * 4;
    torch::Tensor composed = torch::silu(gu.narrow(1, 0, 40)) * gu.narrow(1, 40, 40);
    EXPECT_TRUE(torch::allclose(cpu_kernels::SiluMul(gu), composed, 1e-6, 1e-6)) << "n=" << n;
  }
}

}  // namespace
}  // namespace kvc
