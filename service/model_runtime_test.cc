#include "service/model_runtime.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

using ::testing::HasSubstr;

std::string TinyChat() { return testing::TestData("tiny_chat"); }

std::vector<int64_t> Ids(const Tokenizer& t, const std::string& text, bool special) {
  EncodeOptions o;
  o.allow_special = special;
  absl::StatusOr<std::vector<int32_t>> ids = t.Encode(text, o);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return std::vector<int64_t>(ids->begin(), ids->end());
}

std::vector<int64_t> Concat(std::vector<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

class ModelRuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ModelRuntimeOptions options;
    options.path = TinyChat();
    absl::StatusOr<std::unique_ptr<ModelRuntime>> r = ModelRuntime::Load(options);
    ASSERT_TRUE(r.ok()) << r.status();
    runtime_ = r->release();
  }
  static void TearDownTestSuite() {
    delete runtime_;
    runtime_ = nullptr;
  }
  static ModelRuntime* runtime_;
};

ModelRuntime* ModelRuntimeTest::runtime_ = nullptr;

TEST_F(ModelRuntimeTest, LoadsTheChatFixture) {
  const ModelRuntime& r = *runtime_;
  EXPECT_EQ(r.name(), "tiny-chat");
  EXPECT_EQ(r.fingerprint().size(), 64u);
  EXPECT_EQ(r.chat_format(), ChatFormat::kChatMl);
  EXPECT_EQ(r.device(), "cpu");
  EXPECT_EQ(r.dtype(), "float32");
  EXPECT_EQ(r.tokenizer().vocab_size(), r.model().config().vocab_size);
  EXPECT_EQ(r.tokenizer().SpecialTokenId("<|im_start|>"), 1);
  EXPECT_EQ(r.tokenizer().SpecialTokenId("<|im_end|>"), 2);
  EXPECT_EQ(r.tokenizer().eos_id(), 2);
  EXPECT_GE(r.model().config().max_position_embeddings, 2048);
}

TEST_F(ModelRuntimeTest, EncodesThePromptPiecesWithTheChatTemplate) {
  const ModelRuntime& r = *runtime_;
  const Tokenizer& t = r.tokenizer();
  absl::StatusOr<std::vector<int64_t>> prefix = r.EncodePrefix("Be brief.");
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_EQ(*prefix, Concat({Ids(t, "<|im_start|>system\n", true), Ids(t, "Be brief.", false),
                             Ids(t, "<|im_end|>\n<|im_start|>user\n", true), Ids(t, "Context:\n", false)}));
  absl::StatusOr<std::vector<int64_t>> bare = r.EncodePrefix("");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(*bare, Concat({Ids(t, "<|im_start|>user\n", true), Ids(t, "Context:\n", false)}));

  absl::StatusOr<std::vector<int64_t>> suffix = r.EncodeSuffix("Who wrote it?");
  ASSERT_TRUE(suffix.ok()) << suffix.status();
  EXPECT_EQ(*suffix, Concat({Ids(t, "\n\nQuestion: Who wrote it?", false),
                             Ids(t, "<|im_end|>\n<|im_start|>assistant\n", true)}));

  // Markup inside a document stays text.
  absl::StatusOr<std::vector<int64_t>> doc = r.EncodeDocument("a <|im_end|> b");
  ASSERT_TRUE(doc.ok());
  for (int64_t id : *doc) EXPECT_NE(id, 2);
  EXPECT_EQ(r.document_separator(), Ids(t, "\n\n", false));
}

TEST_F(ModelRuntimeTest, ChecksTheRequestedModel) {
  const ModelRuntime& r = *runtime_;
  EXPECT_TRUE(r.CheckRequestedModel(std::nullopt).ok());
  EXPECT_TRUE(r.CheckRequestedModel("tiny-chat").ok());
  EXPECT_TRUE(r.CheckRequestedModel(r.fingerprint()).ok());
  EXPECT_TRUE(r.CheckRequestedModel(absl::AsciiStrToUpper(r.fingerprint())).ok());
  absl::Status other = r.CheckRequestedModel("SmolLM2-135M-Instruct");
  EXPECT_EQ(other.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.message(), HasSubstr("SmolLM2-135M-Instruct"));
  EXPECT_THAT(other.message(), HasSubstr("tiny-chat"));
}

TEST(ModelRuntimeLoadTest, RefusesBadOptions) {
  ModelRuntimeOptions o;
  o.path = TinyChat();
  o.dtype = "float64";
  EXPECT_EQ(ModelRuntime::Load(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.dtype = "auto";
  o.chat_format = "vicuna";
  EXPECT_EQ(ModelRuntime::Load(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.chat_format = "raw";
  absl::StatusOr<std::unique_ptr<ModelRuntime>> raw = ModelRuntime::Load(o);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ((*raw)->chat_format(), ChatFormat::kRaw);
  o.path = testing::TestData("does_not_exist");
  EXPECT_EQ(ModelRuntime::Load(o).status().code(), absl::StatusCode::kNotFound);
  o.path = TinyChat();
  o.device = "tpu";
  EXPECT_EQ(ModelRuntime::Load(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelRuntimeLoadTest, RefusesATokenizerLargerThanTheModel) {
  // tiny_llama has 512 embeddings, fewer than the chat tokenizer's vocabulary.
  absl::StatusOr<std::unique_ptr<LlamaModel>> model = LlamaModel::Load(testing::TestData("tiny_llama"));
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(TinyChat());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ASSERT_GT((*tokenizer)->vocab_size(), 512);
  EXPECT_EQ(ModelRuntime::FromParts(*std::move(model), *std::move(tokenizer), ChatFormat::kChatMl).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvc
