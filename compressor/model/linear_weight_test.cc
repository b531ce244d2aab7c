#include "compressor/model/linear_weight.h"

#include "gtest/gtest.h"

namespace kvc {
namespace {

// A [rows, cols] weight made of Q4_1-style groups: code * scale + min with every code 0..15 present, so that
// quantizing it must give back these very groups.
struct Groups {
  torch::Tensor codes, scale, min, w;
};
Groups MakeGroups(int64_t rows, int64_t cols) {
  torch::manual_seed(7);
  const int64_t g = LinearWeight::kGroup;
  Groups out;
  out.codes = torch::randint(0, 16, {rows, cols / g, g}, torch::kInt64);
  out.codes.select(2, 0).fill_(0);
  out.codes.select(2, 1).fill_(15);
  out.scale = torch::rand({rows, cols / g, 1}) * 0.02 + 1e-3;
  out.min = -torch::rand({rows, cols / g, 1}) * 0.1;
  out.w = (out.codes.to(torch::kFloat32) * out.scale + out.min).reshape({rows, cols});
  return out;
}

TEST(LinearWeightTest, ParsesFormatNames) {
  EXPECT_EQ(*ParseWeightFormat("float"), WeightFormat::kFloat);
  EXPECT_EQ(*ParseWeightFormat("q4"), WeightFormat::kQ4);
  EXPECT_EQ(ParseWeightFormat("int3").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseWeightFormat("int8"), WeightFormat::kInt8);
  EXPECT_STREQ(WeightFormatName(WeightFormat::kQ4), "q4");
  EXPECT_STREQ(WeightFormatName(WeightFormat::kInt8), "int8");
  EXPECT_NE(ParseWeightFormat("int3").status().message().find("float, q4, int8"), std::string::npos);
}

TEST(LinearWeightTest, FloatIsTheDenseProduct) {
  Groups g = MakeGroups(48, 64);
  torch::Tensor bias = torch::randn({48});
  auto lw = LinearWeight::Create("w", g.w, bias, WeightFormat::kFloat, torch::kFloat32);
  ASSERT_TRUE(lw.ok()) << lw.status();
  torch::Tensor x = torch::randn({5, 64});
  EXPECT_TRUE(torch::allclose(lw->Apply(x), torch::addmm(bias, x, g.w.t())));
  EXPECT_EQ(lw->bytes(), (48 * 64 + 48) * 4);
}

TEST(LinearWeightTest, Q4KeepsQ4_1GroupsAndExpandsThemExactly) {
  Groups g = MakeGroups(48, 64);
  auto lw = LinearWeight::Create("w", g.w, {}, WeightFormat::kQ4, torch::kFloat32);
  ASSERT_TRUE(lw.ok()) << lw.status();
  // Codes and minima come back as they were; scales to float rounding, so the weight to a few ulps.
  EXPECT_LE((lw->Dense() - g.w).abs().max().item<double>(), 1e-6);
  EXPECT_LT(lw->bytes(), 48 * 64 * 2);
}

TEST(LinearWeightTest, Q4ManyRowsIsTheDenseGemmOfTheExpandedWeight) {
  Groups g = MakeGroups(48, 64);
  torch::Tensor bias = torch::randn({48});
  auto lw = LinearWeight::Create("w", g.w, bias, WeightFormat::kQ4, torch::kFloat32);
  ASSERT_TRUE(lw.ok()) << lw.status();
  torch::Tensor x = torch::randn({LinearWeight::kKernelMaxRows + 1, 64});
  EXPECT_TRUE(torch::equal(lw->Apply(x), torch::addmm(bias, x, lw->Dense().t())));
}

// The few-row kernels, vnni_gemv's where the CPU has VNNI and LibTorch's int4 kernel always when asked: each
// within bfloat16 rounding of the float product (LibTorch's reads bfloat16 activations).
class Q4KernelTest : public ::testing::TestWithParam<vnni_gemv::Kernels> {
 protected:
  // The dtype the few-row kernel reads: vnni_gemv's takes the model dtype.
  torch::ScalarType KernelInput() const {
    return vnni_gemv::Usable(GetParam()) ? torch::kFloat32 : torch::kBFloat16;
  }
};

TEST_P(Q4KernelTest, FewRowsMatchTheFloatProductWithinBfloat16Rounding) {
  Groups g = MakeGroups(64, 128);
  torch::Tensor bias = torch::randn({64});
  auto lw = LinearWeight::Create("w", g.w, bias, WeightFormat::kQ4, torch::kFloat32, GetParam());
  ASSERT_TRUE(lw.ok()) << lw.status();
  for (int64_t rows : {int64_t{1}, int64_t{7}, LinearWeight::kKernelMaxRows}) {
    torch::Tensor x = torch::randn({rows, 128});
    torch::Tensor want = torch::addmm(bias, x, g.w.t());
    torch::Tensor got = lw->Apply(x);
    EXPECT_EQ(got.scalar_type(), torch::kFloat32);
    const double rel = ((got - want).abs().max() / want.abs().max()).item<double>();
    EXPECT_LE(rel, 2e-2) << rows << " rows";
    EXPECT_GT(rel, 0) << "the kernel path was not taken";
  }
}

// Product leaves the kernel's dtype for the caller to fuse into its next step; the values are Apply's.
TEST_P(Q4KernelTest, ProductIsApplyInTheKernelsDtype) {
  Groups g = MakeGroups(64, 128);
  auto q4 = LinearWeight::Create("w", g.w, {}, WeightFormat::kQ4, torch::kFloat32, GetParam());
  auto dense = LinearWeight::Create("w", g.w, {}, WeightFormat::kFloat, torch::kFloat32);
  ASSERT_TRUE(q4.ok() && dense.ok());
  EXPECT_EQ(q4->InputType(1), KernelInput());
  EXPECT_EQ(q4->InputType(LinearWeight::kKernelMaxRows + 1), torch::kFloat32);
  EXPECT_EQ(dense->InputType(1), torch::kFloat32);
  for (int64_t rows : {int64_t{1}, LinearWeight::kKernelMaxRows + 1}) {
    torch::Tensor x = torch::randn({rows, 128});
    torch::Tensor p = q4->Product(x.to(q4->InputType(rows)));
    EXPECT_EQ(p.scalar_type(), q4->InputType(rows)) << rows;
    EXPECT_TRUE(torch::equal(p.to(torch::kFloat32), q4->Apply(x))) << rows;
    EXPECT_TRUE(torch::equal(dense->Product(x), dense->Apply(x))) << rows;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, Q4KernelTest,
                         ::testing::Values(vnni_gemv::Kernels::kAuto, vnni_gemv::Kernels::kLibTorch),
                         [](const ::testing::TestParamInfo<vnni_gemv::Kernels>& info) {
                           return std::string(vnni_gemv::KernelsName(info.param));
                         });

// The kernel packs output rows in blocks of 16; other counts fall back to the expanded product.
TEST(LinearWeightTest, Q4OddOutputCountFallsBackToTheExpandedProduct) {
  Groups g = MakeGroups(40, 64);
  auto lw = LinearWeight::Create("w", g.w, {}, WeightFormat::kQ4, torch::kFloat32);
  ASSERT_TRUE(lw.ok()) << lw.status();
  torch::Tensor x = torch::randn({1, 64});
  EXPECT_TRUE(torch::equal(lw->Apply(x), torch::mm(x, lw->Dense().t())));
}

TEST(LinearWeightTest, Q4RefusesInputsNotDivisibleByTheGroup) {
  auto lw = LinearWeight::Create("layers.0.mlp", torch::randn({32, 40}), {}, WeightFormat::kQ4, torch::kFloat32);
  EXPECT_EQ(lw.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(lw.status().message().find("layers.0.mlp"), std::string::npos);
}

// int8 keeps one code per weight and a scale per output row, and every product, of one row or many, is the
// int8 product of the activations' rows in two digits: within a few percent of the float product's largest
// value (the weights' rounding).
TEST(LinearWeightTest, Int8ProductsAreTheInt8RowProducts) {
  Groups g = MakeGroups(48, 64);
  torch::Tensor bias = torch::randn({48});
  auto lw = LinearWeight::Create("w", g.w, bias, WeightFormat::kInt8, torch::kFloat32);
  ASSERT_TRUE(lw.ok()) << lw.status();
  // Codes, scales, bias, and on a CPU with VNNI the rows' code sums for vnni_gemv's kernel.
  EXPECT_EQ(lw->bytes(), 48 * 64 + 48 * 4 + 48 * 4 + (vnni_gemv::Available() ? 48 * 4 : 0));
  int8_rows::Rows w8 = int8_rows::Quantize(g.w);
  EXPECT_TRUE(torch::equal(lw->Dense(), w8.codes.to(torch::kFloat32) * w8.scales.unsqueeze(1)));
  for (int64_t rows : {int64_t{1}, int64_t{5}, LinearWeight::kKernelMaxRows + 1, int64_t{300}}) {
    torch::Tensor x = torch::randn({rows, 64});
    EXPECT_EQ(lw->InputType(rows), torch::kFloat32);
    torch::Tensor got = lw->Apply(x);
    EXPECT_TRUE(torch::equal(got, int8_rows::Product(int8_rows::Quantize(x, int8_rows::Digits::kTwo), w8, bias)))
        << rows;
    EXPECT_TRUE(torch::equal(lw->Product(x), got)) << rows;
    torch::Tensor want = torch::addmm(bias, x, g.w.t());
    EXPECT_LE(((got - want).abs().max() / want.abs().max()).item<double>(), 3e-2) << rows;
  }
  // The model's bfloat16 dtype: the product is computed the same way and returned in it.
  auto bf = LinearWeight::Create("w", g.w, bias, WeightFormat::kInt8, torch::kBFloat16);
  ASSERT_TRUE(bf.ok()) << bf.status();
  EXPECT_EQ(bf->Apply(torch::randn({3, 64}).to(torch::kBFloat16)).scalar_type(), torch::kBFloat16);
}

TEST(LinearWeightTest, ConstantGroupsQuantizeWithoutNaN) {
  torch::Tensor w = torch::full({16, 32}, 0.25);
  auto lw = LinearWeight::Create("w", w, {}, WeightFormat::kQ4, torch::kFloat32);
  ASSERT_TRUE(lw.ok()) << lw.status();
  EXPECT_TRUE(torch::equal(lw->Dense(), w));
  EXPECT_FALSE(lw->Apply(torch::ones({1, 32})).isnan().any().item<bool>());
}

}  // namespace
}  // namespace kvc
