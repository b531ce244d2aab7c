// The CLI's building blocks without a server: JSONL input, the results file, the progress line, the output
// formats and the flags that make requests.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "client/cpp/cli/document_input.h"
#include "client/cpp/cli/output_format.h"
#include "client/cpp/cli/progress_bar.h"
#include "client/cpp/cli/request_flags.h"

namespace kvc::cli {
namespace {

TEST(DocumentInputTest, ParsesTextAndTokenIdsWithDefaultIds) {
  std::istringstream in(
      "{\"id\": \"a\", \"text\": \"alpha\", \"url\": \"ignored\"}\n"
      "\n"
      "{\"token_ids\": [1, 2, 3]}\n"
      "{\"id\": 42, \"text\": \"forty-two\"}\n");
  absl::StatusOr<std::vector<JsonlDocument>> docs = ParseDocumentsJsonl(in, "docs.jsonl");
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 3u);
  EXPECT_EQ((*docs)[0].id, "a");
  EXPECT_EQ((*docs)[0].document.text(), "alpha");
  EXPECT_EQ((*docs)[0].document.id(), "a");
  EXPECT_EQ((*docs)[1].id, "3");  // the line number
  EXPECT_EQ((*docs)[1].line, 3);
  ASSERT_TRUE((*docs)[1].document.has_token_ids());
  EXPECT_EQ((*docs)[1].document.token_ids().ids_size(), 3);
  EXPECT_EQ((*docs)[2].id, "42");
}

TEST(DocumentInputTest, ErrorsNameTheLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"text\": \"ok\"}\nnot json\n", "docs.jsonl:2: not valid JSON"},
      {"[1, 2]\n", "docs.jsonl:1: expected a JSON object"},
      {"{\"id\": \"x\"}\n", "exactly one of"},
      {"{\"text\": \"a\", \"token_ids\": [1]}\n", "exactly one of"},
      {"{\"text\": 5}\n", "\"text\" must be a string"},
      {"{\"token_ids\": [1, -2]}\n", "\"token_ids\" must hold integers"},
      {"{\"id\": [1], \"text\": \"a\"}\n", "\"id\" must be a string or an integer"},
      {"{\"id\": \"" + std::string(300, 'i') + "\", \"text\": \"a\"}\n", "longer than 256 bytes"},
  };
  for (const auto& [input, expected] : cases) {
    std::istringstream in(input);
    absl::StatusOr<std::vector<JsonlDocument>> docs = ParseDocumentsJsonl(in, "docs.jsonl");
    ASSERT_FALSE(docs.ok()) << input;
    EXPECT_EQ(docs.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(docs.status().message().find(expected), absl::string_view::npos) << docs.status();
  }
}

TEST(DocumentInputTest, DoneIdsSkipPartialLinesAndMissingFiles) {
  const std::string path = ::testing::TempDir() + "/done.jsonl";
  {
    std::ofstream out(path);
    out << "{\"id\": \"a\", \"cache_id\": \"" << std::string(64, '1') << "\"}\n"
        << "{\"id\": \"b\"}\n"  // no cache_id: not done
        << "{\"id\": \"c\", \"cache_id\": \"" << std::string(64, '2') << "\"}\n"
        << "{\"id\": \"d\", \"cache_";  // cut short by a crash
  }
  absl::StatusOr<std::set<std::string>> done = ReadDoneIds(path);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(*done, (std::set<std::string>{"a", "c"}));
  absl::StatusOr<std::set<std::string>> none = ReadDoneIds(path + ".absent");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  std::remove(path.c_str());
}

TEST(DocumentInputTest, TextDocumentsFromFilesAndStdin) {
  const std::string path = ::testing::TempDir() + "/doc.txt";
  {
    std::ofstream(path) << "file text";
  }
  std::istringstream in("stdin text");
  absl::StatusOr<std::vector<kvc::v1::Document>> docs = ReadTextDocuments({path, "-"}, in);
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[0].text(), "file text");
  EXPECT_EQ((*docs)[0].id(), path);
  EXPECT_EQ((*docs)[1].text(), "stdin text");
  std::istringstream in2("x");
  EXPECT_EQ(ReadTextDocuments({"-", "-"}, in2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadTextDocuments({path + ".absent"}, in2).status().code(), absl::StatusCode::kNotFound);
  std::remove(path.c_str());
}

TEST(ProgressBarTest, RenderShowsCountRateAndEta) {
  ProgressBarOptions options;
  options.width = 10;
  EXPECT_EQ(ProgressBar::Render(50, 100, absl::Seconds(10), options),
            "[#####-----]  50/100  50.0%    5.00 doc/s  ETA 0:10");
  EXPECT_EQ(ProgressBar::Render(100, 100, absl::Seconds(20), options),
            "[##########] 100/100 100.0%    5.00 doc/s  ETA 0:00");
  EXPECT_EQ(ProgressBar::Render(0, 100, absl::ZeroDuration(), options),
            "[----------]   0/100   0.0%    0.00 doc/s  ETA --:--");
  EXPECT_EQ(ProgressBar::Render(1, 10000, absl::Seconds(1), options).substr(0, 30),
            "[----------]     1/10000   0.0");
  EXPECT_NE(ProgressBar::Render(1, 7201, absl::Seconds(1), options).find("ETA 2:00:00"), std::string::npos);
}

TEST(ProgressBarTest, NonInteractiveWritesOneLinePerTenth) {
  std::ostringstream out;
  absl::Mutex mu;
  ProgressBar bar(20, &out, &mu, ProgressBarOptions{});
  for (int i = 0; i < 20; ++i) bar.Advance(1);
  bar.Finish();
  const std::string text = out.str();
  const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  EXPECT_EQ(lines, 10);  // 10%, 20%, ..., 100%
  EXPECT_NE(text.find("20/20 100.0%"), std::string::npos);
  EXPECT_EQ(text.find('\r'), std::string::npos);
}

kvc::v1::CacheInfo SampleInfo() {
  kvc::v1::CacheInfo info;
  info.set_cache_id(std::string(64, 'c'));
  info.set_model("m");
  info.mutable_spec()->set_method("finch");
  info.mutable_spec()->set_ratio(8);
  (*info.mutable_spec()->mutable_options())["granularity"] = "layer";
  (*info.mutable_spec()->mutable_options())["chunk_tokens"] = "512";
  info.set_tokens_in(800);
  info.set_tokens_out(100);
  info.set_layers(30);
  info.set_kv_heads(3);
  info.set_head_dim(64);
  info.set_dtype(kvc::v1::CACHE_DTYPE_BF16);
  info.set_codec(kvc::v1::CACHE_CODEC_ZSTD);
  info.set_bytes(12345);
  return info;
}

TEST(OutputFormatTest, CacheInfoTextBlock) {
  std::ostringstream out;
  PrintCacheInfo(out, SampleInfo());
  const std::string text = out.str();
  for (const char* line : {"cache_id: cccc", "\nmodel: m\n", "\nmethod: finch\n", "\nbudget: ratio=8\n",
                           "\noptions: chunk_tokens=512 granularity=layer\n", "\ntokens_in: 800\n",
                           "\ntokens_out: 100\n", "\ncompression: 8.00x\n", "\nlayers: 30\n", "\nkv_heads: 3\n",
                           "\nhead_dim: 64\n", "\ndtype: bf16\n", "\ncodec: zstd\n", "\nbytes: 12345\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << " in\n" << text;
  }
  EXPECT_EQ(text.find("timings:"), std::string::npos);
  std::ostringstream no_id;
  PrintCacheInfo(no_id, SampleInfo(), /*with_id=*/false);
  EXPECT_EQ(no_id.str().rfind("model: ", 0), 0u);
}

TEST(OutputFormatTest, CacheInfoJsonUsesNumbersAndShortNames) {
  const nlohmann::json j = CacheInfoJson(SampleInfo());
  EXPECT_EQ(j["tokens_in"], 800);
  EXPECT_TRUE(j["tokens_in"].is_number_integer());
  EXPECT_EQ(j["dtype"], "bf16");
  EXPECT_EQ(j["codec"], "zstd");
  EXPECT_EQ(j["spec"]["ratio"], 8.0);
  EXPECT_EQ(j["spec"]["options"]["granularity"], "layer");
  EXPECT_DOUBLE_EQ(j["compression_ratio"].get<double>(), 8.0);
  EXPECT_FALSE(j.contains("timings"));
}

TEST(OutputFormatTest, TimestampsAndUsage) {
  google::protobuf::Timestamp t;
  EXPECT_EQ(TimestampText(t), "-");
  t.set_seconds(1714564800);
  EXPECT_EQ(TimestampText(t), "2024-05-01T12:00:00Z");
  kvc::v1::Usage usage;
  usage.set_cached_tokens(10);
  usage.set_prompt_tokens(2);
  usage.set_generated_tokens(3);
  usage.set_finish_reason(kvc::v1::FINISH_REASON_STOP);
  usage.set_time_to_first_token_seconds(0.5);
  EXPECT_EQ(UsageLine(usage),
            "cached_tokens=10 prompt_tokens=2 generated_tokens=3 finish=stop time_to_first_token=0.500s");
  EXPECT_EQ(UsageJson(usage)["finish_reason"], "stop");
}

TEST(RequestFlagsTest, SpecAndSamplingFromTheCommandLine) {
  CLI::App app;
  SpecFlags spec;
  SamplingFlags sampling;
  spec.Register(&app, "method");
  sampling.Register(&app);
  std::vector<std::string> args = {"--ignore-eos", "--max-tokens", "16",   "--stop",     "\n\n",
                                   "--dtype",      "int8",         "--codec", "zstd",    "--option",
                                   "window=query", "--target-tokens", "64",  "--method", "snapkv"};
  std::reverse(args.begin(), args.end());  // CLI11 parses a reversed vector
  app.parse(args);
  const kvc::v1::CompressionSpec s = spec.Spec();
  EXPECT_EQ(s.method(), "snapkv");
  EXPECT_EQ(s.target_tokens(), 64);
  EXPECT_EQ(s.options().at("window"), "query");
  EXPECT_EQ(spec.Dtype(), kvc::v1::CACHE_DTYPE_INT8);
  EXPECT_EQ(spec.Codec(), kvc::v1::CACHE_CODEC_ZSTD);
  EXPECT_FALSE(spec.has_system_prompt());
  const kvc::v1::SamplingParams p = sampling.Params();
  EXPECT_EQ(p.max_tokens(), 16);
  EXPECT_FALSE(p.has_top_p());  // unset stays unset: the server's default applies
  EXPECT_TRUE(p.has_stop_on_eos());
  EXPECT_FALSE(p.stop_on_eos());
  ASSERT_EQ(p.stop_size(), 1);
  EXPECT_EQ(p.stop(0), "\n\n");
}

TEST(RequestFlagsTest, MalformedValuesAreParseErrors) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--option", "novalue"},
                                             {"--ratio", "8", "--target-tokens", "5"},
                                             {"--dtype", "f64"},
                                             {"--ratio", "eight"}}) {
    CLI::App app;
    SpecFlags spec;
    spec.Register(&app, "method");
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    EXPECT_THROW(app.parse(reversed), CLI::ParseError) << args[0];
  }
}

}  // namespace
}  // namespace kvc::cli
