// Bad model files: each must come back as a clear absl::Status, never a crash. Run under
// -DKVC_SANITIZE=ON to check for out-of-bounds reads as well.
#include <filesystem>
#include <fstream>
#include <string>

#include "compressor/model/gguf_file.h"
#include "compressor/model/llama_model.h"
#include "compressor/util/mapped_file.h"
#include "gtest/gtest.h"
#include "tests/support/testdata.h"

namespace kvc {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  std::string path = std::string(::testing::TempDir()) + "/kvc_model_files_" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

void ExpectCleanError(const absl::Status& s, std::initializer_list<absl::StatusCode> codes) {
  ASSERT_FALSE(s.ok());
  EXPECT_FALSE(s.message().empty());
  bool expected = false;
  for (auto c : codes) expected |= s.code() == c;
  EXPECT_TRUE(expected) << s;
}

TEST(ModelFilesTest, MissingFile) {
  auto m = LlamaModel::Load("/nonexistent/model.gguf");
  ExpectCleanError(m.status(), {absl::StatusCode::kNotFound});
}

TEST(ModelFilesTest, TruncatedGgufAtManyPoints) {
  std::string bytes = Slurp(kvc::testing::TestData("tiny_llama.gguf"));
  ASSERT_GT(bytes.size(), 1000u);
  // Inside the magic, the header counts, the metadata, the tensor table and the tensor data.
  std::vector<size_t> cuts = {0, 2, 6, 12, 20, 40, 100, 300, 700};
  for (int i = 1; i < 16; ++i) cuts.push_back(bytes.size() * i / 16);
  cuts.push_back(bytes.size() - 1);
  for (size_t cut : cuts) {
    std::string path = WriteTemp("trunc.gguf", bytes.substr(0, cut));
    auto m = LlamaModel::Load(path);
    SCOPED_TRACE("cut at " + std::to_string(cut));
    ExpectCleanError(m.status(), {absl::StatusCode::kDataLoss, absl::StatusCode::kInvalidArgument,
                                  absl::StatusCode::kNotFound});
  }
}

TEST(ModelFilesTest, TruncatedSafetensorsShard) {
  fs::path src = kvc::testing::TestData("tiny_llama");
  fs::path dir = fs::path(::testing::TempDir()) / "kvc_trunc_st";
  fs::remove_all(dir);
  fs::copy(src, dir, fs::copy_options::recursive);
  std::string shard = (dir / "model-00001-of-00006.safetensors").string();
  std::string bytes = Slurp(shard);
  for (size_t cut : {size_t{0}, size_t{4}, size_t{8}, size_t{50}, bytes.size() / 2, bytes.size() - 1}) {
    std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes.substr(0, cut);
    auto m = LlamaModel::Load(dir.string());
    SCOPED_TRACE("cut at " + std::to_string(cut));
    ExpectCleanError(m.status(), {absl::StatusCode::kDataLoss, absl::StatusCode::kInvalidArgument});
  }
}

TEST(ModelFilesTest, GarbageBytes) {
  std::string garbage(4096, '\0');
  uint64_t x = 88172645463325252ull;
  for (char& c : garbage) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    c = static_cast<char>(x);
  }
  auto m = LlamaModel::Load(WriteTemp("garbage.bin", garbage));
  ExpectCleanError(m.status(), {absl::StatusCode::kInvalidArgument, absl::StatusCode::kDataLoss});
  // Garbage after a valid magic must fail in the parser, not in a read past the end.
  auto g = LlamaModel::Load(WriteTemp("garbage.gguf", "GGUF" + garbage));
  ExpectCleanError(g.status(), {absl::StatusCode::kInvalidArgument, absl::StatusCode::kDataLoss,
                                absl::StatusCode::kUnimplemented});
}

TEST(ModelFilesTest, UnsupportedArchitecture) {
  auto gguf = LlamaModel::Load(kvc::testing::TestData("bad/unsupported_arch.gguf"));
  ExpectCleanError(gguf.status(), {absl::StatusCode::kUnimplemented});
  EXPECT_NE(gguf.status().message().find("mamba"), std::string::npos);
  auto hf = LlamaModel::Load(kvc::testing::TestData("bad/unsupported_hf"));
  ExpectCleanError(hf.status(), {absl::StatusCode::kUnimplemented});
  EXPECT_NE(hf.status().message().find("gpt2"), std::string::npos);
}

TEST(ModelFilesTest, UnsupportedQuantType) {
  auto m = LlamaModel::Load(kvc::testing::TestData("bad/unsupported_quant.gguf"));
  ExpectCleanError(m.status(), {absl::StatusCode::kUnimplemented});
  EXPECT_NE(m.status().message().find("IQ4_NL"), std::string::npos) << m.status();
}

TEST(ModelFilesTest, ShapeMismatchNamesTheTensor) {
  auto m = LlamaModel::Load(kvc::testing::TestData("bad/shape_mismatch"));
  ExpectCleanError(m.status(), {absl::StatusCode::kInvalidArgument});
  EXPECT_NE(m.status().message().find("mlp"), std::string::npos) << m.status();
}

TEST(ModelFilesTest, MalformedConfigJson) {
  fs::path dir = fs::path(::testing::TempDir()) / "kvc_bad_config";
  fs::remove_all(dir);
  fs::copy(kvc::testing::TestData("tiny_qwen2"), dir, fs::copy_options::recursive);
  std::ofstream(dir / "config.json", std::ios::trunc) << "{\"model_type\": \"llama\", ";
  ExpectCleanError(LlamaModel::Load(dir.string()).status(), {absl::StatusCode::kInvalidArgument});
  std::ofstream(dir / "config.json", std::ios::trunc) << "{\"model_type\": \"llama\", \"num_hidden_layers\": \"x\"}";
  ExpectCleanError(LlamaModel::Load(dir.string()).status(), {absl::StatusCode::kInvalidArgument});
}

}  // namespace
}  // namespace kvc
