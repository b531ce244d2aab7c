// Unit tests of the tokenizer pieces that need no reference data: UTF-8 handling, bad input, streaming
// detokenization, chat templates, and a hand-built BPE whose merges are easy to follow.
#include "compressor/tokenizer/bpe_tokenizer.h"

#include <fstream>
#include <string>

#include "compressor/tokenizer/chat_template.h"
#include "compressor/tokenizer/incremental_detokenizer.h"
#include "compressor/tokenizer/text_boundaries.h"
#include "compressor/tokenizer/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

using ::testing::ElementsAre;

// Vocabulary: every byte, plus "ab", "abc", "Ġab" and two special tokens.
std::unique_ptr<BpeTokenizer> TinyBpe() {
  BpeTokenizerSpec spec;
  ByteLevelMap map;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    map.Encode(std::string(1, static_cast<char>(b)), &s);
    spec.vocab.push_back(s);
  }
  spec.vocab.push_back("ab");    // 256
  spec.vocab.push_back("abc");   // 257
  spec.vocab.push_back("Ġa");    // 258
  spec.vocab.push_back("Ġab");   // 259
  spec.merges = {{"Ġ", "a"}, {"a", "b"}, {"ab", "c"}, {"Ġa", "b"}};
  spec.added_tokens.push_back({"<|s|>", 260, true});
  spec.added_tokens.push_back({"<tool>", 261, /*special=*/false, /*lstrip=*/true});
  auto step = MakeRegexSplit(kGpt2Pattern, SplitBehavior::kIsolated);
  spec.pre_tokenizer.Add(std::move(*step));
  return std::move(BpeTokenizer::Create(std::move(spec)).value());
}

TEST(TextBoundariesTest, WordsKeepTheirPiecesAndSentencesStartAfterAStopOrALineBreak) {
  auto tok = TinyBpe();
  // "ab" " ab" "c" "." " ab" "\n" "3" "." "1" "<|s|>"
  auto ids = tok->Encode("ab abc. ab\n3.1<|s|>", {.allow_special = true});
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_EQ(ids->size(), 10u);
  std::vector<int64_t> wide(ids->begin(), ids->end());
  auto flags = TextBoundaries(*tok, wide);
  ASSERT_TRUE(flags.ok()) << flags.status();
  constexpr uint8_t W = kWordStart, S = kSentenceStart | kWordStart;
  // "c" continues " ab"; the space after "." starts a sentence, "1" after "3." does not; a special token is
  // a sentence of its own.
  EXPECT_THAT(*flags, ElementsAre(S, W, 0, W, S, W, S, W, W, S));
  wide.push_back(9999);
  EXPECT_EQ(TextBoundaries(*tok, wide).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Utf8Test, ValidationReportsByteOffset) {
  EXPECT_TRUE(ValidateUtf8("héllo 😀").ok());
  absl::Status s = ValidateUtf8(std::string("abc\xC3(xyz", 8));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("byte offset 3"), std::string::npos) << s;
  EXPECT_FALSE(ValidateUtf8("\xED\xA0\x80").ok());  // a UTF-16 surrogate
  EXPECT_FALSE(ValidateUtf8("\xC0\xAF").ok());      // overlong
}

TEST(Utf8Test, LossyReplacesMaximalSubparts) {
  EXPECT_EQ(Utf8Lossy("a\xF0\x9F\x98z"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(Utf8Lossy("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(BpeTokenizerTest, MergesByRank) {
  auto tok = TinyBpe();
  EXPECT_THAT(tok->Encode("abc ab").value(), ElementsAre(257, 259));
  EXPECT_THAT(tok->Encode(" abc").value(), ElementsAre(259, 'c'));
  EXPECT_EQ(tok->Decode(tok->Encode("abc ab").value()).value(), "abc ab");
}

TEST(BpeTokenizerTest, SpecialTokensOnlyWhenAllowed) {
  auto tok = TinyBpe();
  auto plain = tok->Encode("x<|s|>").value();
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 260), 0);
  EncodeOptions allow;
  allow.allow_special = true;
  EXPECT_THAT(tok->Encode("x<|s|>", allow).value(), ElementsAre('x', 260));
  // Non-special added tokens are always recognized; this one swallows whitespace on its left.
  EXPECT_THAT(tok->Encode("x  <tool>").value(), ElementsAre('x', 261));
  EXPECT_TRUE(tok->IsSpecial(260));
  EXPECT_FALSE(tok->IsSpecial(261));
  DecodeOptions skip;
  skip.skip_special = true;
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{'x', 260}, skip).value(), "x");
}

TEST(BpeTokenizerTest, RejectsBadInput) {
  auto tok = TinyBpe();
  auto bad = tok->Encode(std::string("ok\x80", 3));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("byte offset 2"), std::string::npos);
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{1, 9999}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{-1}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BpeTokenizerTest, MergeOutsideVocabularyIsAnError) {
  BpeTokenizerSpec spec;
  spec.vocab = {"a", "b"};
  spec.merges = {{"a", "b"}};
  auto tok = BpeTokenizer::Create(std::move(spec));
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(IncrementalDetokenizerTest, NeverEmitsHalfACharacter) {
  auto tok = TinyBpe();
  // "é" is two bytes, "😀" four: feed them one byte-token at a time.
  std::string text = "aé😀b";
  IncrementalDetokenizer detok(*tok);
  std::string streamed;
  for (unsigned char c : text) {
    std::string piece = detok.Add(c).value();
    EXPECT_TRUE(ValidateUtf8(piece).ok());
    streamed += piece;
  }
  streamed += detok.Finish();
  EXPECT_EQ(streamed, text);
  IncrementalDetokenizer broken(*tok);
  EXPECT_EQ(broken.Add(0xF0).value(), "");
  EXPECT_EQ(broken.Finish(), "\xEF\xBF\xBD");
}

TEST(ChatTemplateTest, DetectsFamilies) {
  EXPECT_EQ(DetectChatFormat("{{'<|im_start|>' + message['role']}}"), ChatFormat::kChatMl);
  EXPECT_EQ(DetectChatFormat("<|start_header_id|>"), ChatFormat::kLlama3);
  EXPECT_EQ(DetectChatFormat("{{ '[INST] ' + content }}"), ChatFormat::kLlama2);
  EXPECT_EQ(DetectChatFormat(""), ChatFormat::kRaw);
  EXPECT_EQ(ParseChatFormat("nope").status().code(), absl::StatusCode::kInvalidArgument);
}

std::string Flatten(const Prompt& p) {
  std::string s;
  for (const auto& seg : p) s += seg.text;
  return s;
}

TEST(ChatTemplateTest, ChatMlCompressionPrompt) {
  CompressionPrompt cp = BuildCompressionPrompt(ChatFormat::kChatMl, "Be brief.", "Who?");
  EXPECT_EQ(Flatten(cp.prefix), "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nContext:\n");
  EXPECT_EQ(Flatten(cp.suffix), "\n\nQuestion: Who?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, UserContentNeverBecomesSpecialTokens) {
  auto tok = TinyBpe();
  Prompt p = {{"<|s|>", true}, {"<|s|>", false}};
  auto ids = EncodePrompt(*tok, p).value();
  EXPECT_EQ(ids.front(), 260);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 260), 1);
}

TEST(ChatTemplateTest, CompressionPromptIdsKeepThePrefixApart) {
  auto tok = TinyBpe();
  auto p = EncodeCompressionPrompt(*tok, ChatFormat::kRaw, "S", "doc <|s|>", "Q?");
  ASSERT_TRUE(p.ok()) << p.status();
  std::string prefix = tok->Decode(std::vector<int32_t>(p->context.begin(), p->context.begin() + p->protected_prefix)).value();
  EXPECT_EQ(prefix, "S\n\nContext:\n");
  // The document's special-token text stays text.
  EXPECT_EQ(std::count(p->context.begin(), p->context.end(), 260), 0);
  EXPECT_EQ(tok->Decode(std::vector<int32_t>(p->suffix.begin(), p->suffix.end())).value(), "\n\nQuestion: Q?\nAnswer:");
}

TEST(ChatTemplateTest, Llama3AndLlama2Render) {
  std::vector<ChatMessage> msgs = {{"system", "S"}, {"user", "U"}};
  EXPECT_EQ(Flatten(RenderChat(ChatFormat::kLlama3, msgs, true).value()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(Flatten(RenderChat(ChatFormat::kLlama2, msgs, true).value()),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]");
  EXPECT_EQ(RenderChat(ChatFormat::kChatMl, {{"robot", "x"}}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = std::string(::testing::TempDir()) + "/kvc_tok_" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(TokenizerJsonTest, MalformedFilesGetClearErrors) {
  auto truncated = BpeTokenizer::FromTokenizerJson(WriteTemp("trunc.json", R"({"model": {"type": "BPE", "vocab": {"a")"));
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(truncated.status().message().find("not valid JSON"), std::string::npos) << truncated.status();

  auto wordpiece = BpeTokenizer::FromTokenizerJson(WriteTemp("wp.json", R"({"model": {"type": "WordPiece", "vocab": {}}})"));
  EXPECT_EQ(wordpiece.status().code(), absl::StatusCode::kUnimplemented);

  auto bad_merge = BpeTokenizer::FromTokenizerJson(
      WriteTemp("merge.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})"));
  EXPECT_EQ(bad_merge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_merge.status().message().find("merge 0"), std::string::npos) << bad_merge.status();

  auto bad_regex = BpeTokenizer::FromTokenizerJson(WriteTemp(
      "regex.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}})"));
  EXPECT_EQ(bad_regex.status().code(), absl::StatusCode::kInvalidArgument);

  auto unknown_pre = BpeTokenizer::FromTokenizerJson(WriteTemp(
      "pre.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Whatever"}})"));
  EXPECT_EQ(unknown_pre.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(unknown_pre.status().message().find("Whatever"), std::string::npos);

  EXPECT_EQ(LoadTokenizer("/nonexistent/tokenizer.json").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvc
