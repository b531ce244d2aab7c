#include "compressor/model/output_head.h"

#include "gtest/gtest.h"

namespace kvc {
namespace {

// A [vocab, hidden] table in GGUF's Q8_0 form: int8 codes with a half-precision scale per 32 weights, the
// largest code of each group 127 in magnitude.
torch::Tensor Q8Table(int64_t vocab, int64_t hidden) {
  torch::manual_seed(11);
  const int64_t g = OutputHead::kRowGroup;
  torch::Tensor codes = torch::randint(-127, 128, {vocab, hidden / g, g}, torch::kInt64);
  codes.select(2, 0).fill_(127);
  torch::Tensor scale = (torch::rand({vocab, hidden / g, 1}) * 0.01 + 1e-3).to(torch::kHalf).to(torch::kFloat32);
  return (codes.to(torch::kFloat32) * scale).reshape({vocab, hidden});
}

TEST(OutputHeadTest, KeptAsGivenWithoutInt8) {
  torch::Tensor table = Q8Table(80, 64);
  auto head = OutputHead::Create(table, {});
  ASSERT_TRUE(head.ok()) << head.status();
  torch::Tensor x = torch::randn({3, 64});
  EXPECT_TRUE(torch::allclose(head->Logits(x), torch::mm(x, table.t())));
  EXPECT_TRUE(torch::equal(head->Rows(torch::tensor({5, 0}, torch::kInt64), torch::kFloat32),
                           table.index_select(0, torch::tensor({5, 0}, torch::kInt64))));
  EXPECT_EQ(head->bytes(), 80 * 64 * 4);
}

// Logits from the int8 rows stay within the rounding of a bfloat16 product, on the kernel path (few rows:
// vnni_gemv's where the CPU has VNNI, LibTorch's when asked) and the expanded one (many), and the two agree.
TEST(OutputHeadTest, Int8LogitsStayNearTheFloatProduct) {
  torch::Tensor table = torch::randn({96, 64}) * 0.05;
  for (vnni_gemv::Kernels kernels : {vnni_gemv::Kernels::kAuto, vnni_gemv::Kernels::kLibTorch}) {
    const bool vnni = vnni_gemv::Usable(kernels);
    SCOPED_TRACE(vnni ? "vnni_gemv" : "LibTorch");
    auto head = OutputHead::Create(table, {.int8 = true, .kernels = kernels});
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_FALSE(head->table().defined());
    // Per-row codes and bfloat16 scales; under VNNI the grouped codes with float32 scales, and their packing
    // with float16 ones.
    EXPECT_EQ(head->bytes(), vnni ? 2 * 96 * 64 + 96 * 2 * 4 + 96 * 2 * 2 : 96 * 64 + 96 * 2);
    torch::Tensor x = torch::randn({OutputHead::kInt8MaxRows + 8, 64});
    torch::Tensor want = torch::mm(x, table.t());
    torch::Tensor many = head->Logits(x);
    torch::Tensor few = head->Logits(x.narrow(0, 0, 4));
    const double scale = want.abs().max().item<double>();
    EXPECT_LT((many - want).abs().max().item<double>() / scale, 2e-2);
    EXPECT_LT((few - want.narrow(0, 0, 4)).abs().max().item<double>() / scale, 2e-2);
    EXPECT_LT((few - many.narrow(0, 0, 4)).abs().max().item<double>() / scale, 1e-2);
  }
}

// The embedding's copy gives a Q8_0 table back exactly.
TEST(OutputHeadTest, Int8RowsGiveAQ8TableBack) {
  torch::Tensor table = Q8Table(40, 64);
  auto head = OutputHead::Create(table, {.int8 = true, .rows = true});
  ASSERT_TRUE(head.ok()) << head.status();
  torch::Tensor ids = torch::tensor({3, 39, 3, 0}, torch::kInt64);
  EXPECT_TRUE(torch::equal(head->Rows(ids, torch::kFloat32), table.index_select(0, ids)));
  EXPECT_EQ(head->Rows(ids, torch::kBFloat16).scalar_type(), torch::kBFloat16);
}

TEST(OutputHeadTest, Int8RowsNeedWholeGroups) {
  auto head = OutputHead::Create(torch::randn({8, 40}), {.int8 = true, .rows = true});
  EXPECT_EQ(head.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(OutputHead::Create(torch::randn({8, 40}), {.int8 = true}).ok());
}

}  // namespace
}  // namespace kvc
