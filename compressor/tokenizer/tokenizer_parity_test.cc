// Token-for-token equality with Hugging Face tokenizers on the strings of
// tests/tools/make_tokenizer_fixtures.py (pieces of the public dev set, Unicode, whitespace, digits, code,
// special-token text), for SmolLM2's GGUF-embedded tokenizer and its tokenizer.json form, three more
// byte-level BPE families, and a SentencePiece model.
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compressor/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

using json = nlohmann::json;

struct Expected {
  std::vector<int32_t> plain, special;
  std::string decoded_plain;
};

struct Fixtures {
  std::map<int, std::string> cases;
  std::map<std::string, std::map<int, Expected>> expected;  // tokenizer -> case id -> ids
};

const Fixtures& LoadFixtures() {
  static const Fixtures* fixtures = [] {
    auto* f = new Fixtures();
    std::ifstream cases(kvc::testing::TestData("tokenizers/cases.jsonl"));
    for (std::string line; std::getline(cases, line);) {
      json j = json::parse(line);
      f->cases[j["id"].get<int>()] = j["text"].get<std::string>();
    }
    std::ifstream expected(kvc::testing::TestData("tokenizers/expected.jsonl"));
    for (std::string line; std::getline(expected, line);) {
      json j = json::parse(line);
      Expected e{j["plain"].get<std::vector<int32_t>>(), j["special"].get<std::vector<int32_t>>(),
                 j["decoded_plain"].get<std::string>()};
      f->expected[j["tokenizer"].get<std::string>()][j["id"].get<int>()] = std::move(e);
    }
    return f;
  }();
  return *fixtures;
}

std::string Show(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 40; ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s + (v.size() > 40 ? " ..." : "");
}

struct Case {
  std::string name;       // test name
  std::string reference;  // key in expected.jsonl
  std::string path;       // what LoadTokenizer gets
  bool roundtrip;         // decode(encode(s)) == s holds for this family
};

class TokenizerParityTest : public ::testing::TestWithParam<Case> {};

TEST_P(TokenizerParityTest, MatchesHuggingFace) {
  const Fixtures& f = LoadFixtures();
  ASSERT_GE(f.cases.size(), 2000u) << "tokenizer fixtures missing";
  auto it = f.expected.find(GetParam().reference);
  ASSERT_NE(it, f.expected.end());
  std::string path = GetParam().path;
  if (path.empty()) path = kvc::testing::EnvOr("KVC_SMOLLM2_GGUF", "");
  auto tok = LoadTokenizer(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  int compared = 0, plain_bad = 0, special_bad = 0, decode_bad = 0, roundtrip_bad = 0;
  EncodeOptions allow;
  allow.allow_special = true;
  for (const auto& [id, want] : it->second) {
    const std::string& text = f.cases.at(id);
    ++compared;
    auto plain = (*tok)->Encode(text);
    ASSERT_TRUE(plain.ok()) << plain.status();
    if (*plain != want.plain && plain_bad++ < 5) {
      ADD_FAILURE() << "case " << id << " plain\n text: " << text.substr(0, 200) << "\n ours: " << Show(*plain)
                    << "\n   hf: " << Show(want.plain);
    }
    auto special = (*tok)->Encode(text, allow);
    ASSERT_TRUE(special.ok()) << special.status();
    if (*special != want.special && special_bad++ < 5) {
      ADD_FAILURE() << "case " << id << " special\n text: " << text.substr(0, 200)
                    << "\n ours: " << Show(*special) << "\n   hf: " << Show(want.special);
    }
    auto decoded = (*tok)->Decode(want.plain);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    if (*decoded != want.decoded_plain && decode_bad++ < 5) {
      ADD_FAILURE() << "case " << id << " decode\n ours: " << decoded->substr(0, 200)
                    << "\n   hf: " << want.decoded_plain.substr(0, 200);
    }
    if (GetParam().roundtrip) {
      auto back = (*tok)->Decode(*plain);
      if ((!back.ok() || *back != text) && roundtrip_bad++ < 5) {
        ADD_FAILURE() << "case " << id << " round trip\n text: " << text.substr(0, 200);
      }
    }
  }
  std::cout << GetParam().name << ": " << compared << " strings; mismatches: plain " << plain_bad << ", special "
            << special_bad << ", decode " << decode_bad << ", round trip " << roundtrip_bad << "\n";
  EXPECT_EQ(plain_bad + special_bad + decode_bad + roundtrip_bad, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Families, TokenizerParityTest,
    ::testing::Values(Case{"smollm2_gguf", "smollm2", "", true},
                      Case{"smollm2_json", "smollm2", kvc::testing::TestData("tokenizers/smollm2/tokenizer.json"), true},
                      Case{"llama3_style", "llama3_style", kvc::testing::TestData("tokenizers/llama3_style/tokenizer.json"), true},
                      Case{"qwen2_style", "qwen2_style", kvc::testing::TestData("tokenizers/qwen2_style/tokenizer.json"), false},
                      Case{"gpt2_style", "gpt2_style", kvc::testing::TestData("tokenizers/gpt2_style/tokenizer.json"), true},
                      Case{"spm", "spm", kvc::testing::TestData("tokenizers/spm/tokenizer.model"), false}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace kvc
