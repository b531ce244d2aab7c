// The page of what was kept: counts from kept positions, text per token across split characters, escaping,
// shades, and precise errors.
#include "compressor/explain/kept_page.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(KeptPageTest, CountsHowManySlotsKeptEachPosition) {
  // Two layers of two KV heads over a context of 5 tokens.
  std::vector<torch::Tensor> kept = {torch::tensor({{0, 1, 3}, {0, 2, 3}}), torch::tensor({{0, 3, 4}, {0, 1, 3}})};
  auto counts = KeptCounts(kept, 5);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_THAT(*counts, ElementsAre(4, 2, 1, 4, 1));
  EXPECT_EQ(KeptCounts(kept, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KeptPageTest, RendersTheQuestionTheBudgetAndEveryTokenShadedAndEscaped) {
  KeptPageInput in;
  in.token_text = {"<sys>", "The", " key", " is", " 6", "7", " & more"};
  in.kept_by = {4, 0, 4, 2, 4, 4, 0};
  in.slots = 4;
  in.protected_prefix = 1;
  in.question = "What is the \"key\"?";
  in.method = "focus";
  in.budget = "ratio 8";
  in.tokens_out = 5;
  auto html = RenderKeptPage(in);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, HasSubstr("What is the &quot;key&quot;?"));
  EXPECT_THAT(*html, HasSubstr("ratio 8: 7 context tokens, 5 kept per head; 5 tokens kept by at least one"));
  EXPECT_THAT(*html, HasSubstr("class=\"prefix\" title=\"token 0: kept by 4/4\""));
  EXPECT_THAT(*html, HasSubstr("kept by 2/4\" style=\"background:rgba(220,120,0,0.55)\"> is</span>"));
  EXPECT_THAT(*html, HasSubstr("rgba(220,120,0,0.00)\"> &amp; more</span>"));
  EXPECT_THAT(*html, HasSubstr("&lt;sys&gt;"));
  EXPECT_THAT(*html, Not(HasSubstr("<script")));

  in.kept_by.pop_back();
  EXPECT_EQ(RenderKeptPage(in).status().code(), absl::StatusCode::kInvalidArgument);
  in.kept_by.push_back(0);
  in.slots = 0;
  EXPECT_EQ(RenderKeptPage(in).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvc
