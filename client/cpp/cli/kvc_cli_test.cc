// The `kvc` binary (KVC_CLI) against an in-process server (client/cpp/testing/test_server.h): output
// formats, exit codes and the flags' effect on the requests, as docs/cli.md documents them.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cpp/kvc_client.h"
#include "client/cpp/testing/test_certs.h"
#include "client/cpp/testing/test_server.h"
#include "compressor/format/kvc_reader.h"
#include "compressor/util/sha256.h"

namespace kvc {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using kvc::testing::TestServer;
using kvc::testing::TestServerOptions;

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
}

std::string ShellQuote(const std::string& s) {
  std::string quoted = "'";
  for (char c : s) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string GoldenPath(const std::string& name) {
  const char* root = std::getenv("KVC_SOURCE_DIR");
  return absl::StrCat(root != nullptr ? root : ".", "/tests/testdata/kvc/", name);
}

const std::vector<std::string>& GoldenNames() {
  static const auto* names =
      new std::vector<std::string>{"v1_f32_none.kvc", "v1_bf16_zstd.kvc", "v1_f16_none.kvc", "v1_int8_zstd.kvc"};
  return *names;
}

class KvcCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* cli = std::getenv("KVC_CLI");
    ASSERT_NE(cli, nullptr) << "KVC_CLI must name the kvc binary";
    cli_ = cli;
    dir_ = ::testing::TempDir() + "/kvc_cli_test_" + std::to_string(::getpid());
    ASSERT_EQ(std::system(("mkdir -p " + ShellQuote(dir_)).c_str()), 0);
    StartServer({});
  }

  void TearDown() override { std::system(("rm -rf " + ShellQuote(dir_)).c_str()); }

  void StartServer(const TestServerOptions& options) {
    server_.reset();
    absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  // Runs `kvc` with `args` (no --server added), `stdin_text` on its stdin and `env` assignments prefixed.
  CliResult RunRaw(const std::vector<std::string>& args, const std::string& stdin_text = "",
                   const std::string& env = "") {
    const std::string in = dir_ + "/stdin", out = dir_ + "/stdout", err = dir_ + "/stderr";
    WriteFile(in, stdin_text);
    std::string command = "env -u KVC_SERVER -u KVC_TOKEN " + env + " " + ShellQuote(cli_);
    for (const std::string& a : args) command += " " + ShellQuote(a);
    command += " <" + ShellQuote(in) + " >" + ShellQuote(out) + " 2>" + ShellQuote(err);
    const int status = std::system(command.c_str());
    CliResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = ReadFile(out);
    result.err = ReadFile(err);
    return result;
  }

  // The same against the test server.
  CliResult Run(std::vector<std::string> args, const std::string& stdin_text = "") {
    args.insert(args.begin(), {"--server", server_->target()});
    return RunRaw(args, stdin_text);
  }

  // Stores the golden files through the library; returns their ids in file order.
  std::vector<std::string> StoreGoldenFiles() {
    ClientOptions options;
    options.target = server_->target();
    absl::StatusOr<std::unique_ptr<KvcClient>> client = KvcClient::Create(options);
    EXPECT_TRUE(client.ok());
    std::vector<std::string> ids;
    for (const std::string& name : GoldenNames()) {
      const std::string bytes = ReadFile(GoldenPath(name));
      ids.push_back(Sha256Hex(bytes));
      absl::StatusOr<kvc::v1::PutCacheResponse> put = (*client)->PutCache(ids.back(), bytes);
      EXPECT_TRUE(put.ok()) << put.status();
    }
    return ids;
  }

  std::string cli_;
  std::string dir_;
  std::unique_ptr<TestServer> server_;
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// ---- cache ----

TEST_F(KvcCliTest, CacheLsListsStoredCaches) {
  CliResult empty = Run({"cache", "ls"});
  EXPECT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_EQ(empty.out, "");

  std::vector<std::string> ids = StoreGoldenFiles();
  CliResult ls = Run({"cache", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  const std::vector<std::string> lines = Lines(ls.out);
  ASSERT_EQ(lines.size(), 4u) << ls.out;
  std::vector<std::string> listed;
  for (const std::string& line : lines) {
    const std::vector<std::string> cols = absl::StrSplit(line, "  ");
    ASSERT_EQ(cols.size(), 4u) << line;
    listed.push_back(cols[0]);
    EXPECT_GT(std::stoll(cols[1]), 0);
    EXPECT_THAT(cols[2], ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"));
  }
  std::vector<std::string> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(listed, sorted);

  CliResult limited = Run({"cache", "ls", "--limit", "3", "--page-size", "2"});
  ASSERT_EQ(limited.exit_code, 0) << limited.err;
  EXPECT_EQ(Lines(limited.out).size(), 3u);
  EXPECT_THAT(limited.err, StartsWith("next_page_token: "));
  const std::string token = Lines(limited.err)[0].substr(std::string("next_page_token: ").size());
  CliResult rest = Run({"cache", "ls", "--page-token", token});
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  EXPECT_EQ(Lines(rest.out).size(), 1u);
  EXPECT_THAT(rest.out, StartsWith(sorted[3]));

  CliResult json = Run({"--json", "cache", "ls", "--prefix", sorted[0].substr(0, 6)});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const nlohmann::json j = nlohmann::json::parse(json.out);
  ASSERT_EQ(j["entries"].size(), 1u);
  EXPECT_EQ(j["entries"][0]["cache_id"], sorted[0]);
  EXPECT_EQ(j["next_page_token"], "");
}

TEST_F(KvcCliTest, CacheInspectReadsGoldenFilesWithoutAServer) {
  for (const std::string& name : GoldenNames()) {
    SCOPED_TRACE(name);
    const std::string path = GoldenPath(name);
    absl::StatusOr<KvcHeader> header = KvcReader::ReadHeader(ReadFile(path));
    ASSERT_TRUE(header.ok()) << header.status();
    // Port 1 has no server: inspecting a file must not need one.
    CliResult r = RunRaw({"--server", "127.0.0.1:1", "cache", "inspect", path, "--verify"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::vector<std::string> lines = Lines(r.out);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines[0], "file: " + path);
    const auto has = [&](const std::string& line) {
      EXPECT_NE(std::find(lines.begin(), lines.end(), line), lines.end()) << line << " in\n" << r.out;
    };
    has("model: " + header->metadata["model"].get<std::string>());
    has("model_fingerprint: " + header->fingerprint);
    has("method: " + header->metadata["spec"]["method"].get<std::string>());
    has(absl::StrCat("tokens_in: ", header->tokens_in));
    has(absl::StrCat("tokens_out: ", header->tokens_out));
    has(absl::StrCat("layers: ", header->num_layers));
    has(absl::StrCat("kv_heads: ", header->kv_heads));
    has(absl::StrCat("head_dim: ", header->head_dim));
    has(absl::StrCat("dtype: ", KvcDtypeName(header->dtype)));
    has(absl::StrCat("codec: ", KvcCodecName(header->codec)));
    has(absl::StrCat("bytes: ", ReadFile(path).size()));

    CliResult json = RunRaw({"--json", "cache", "inspect", path});
    ASSERT_EQ(json.exit_code, 0) << json.err;
    const nlohmann::json j = nlohmann::json::parse(json.out);
    EXPECT_EQ(j["file"], path);
    EXPECT_EQ(j["layers"], header->num_layers);
    EXPECT_EQ(j["dtype"], KvcDtypeName(header->dtype));
  }

  const std::string not_kvc = dir_ + "/notes.txt";
  WriteFile(not_kvc, "just some text, long enough to hold a header if it were one ........................");
  CliResult bad = RunRaw({"cache", "inspect", not_kvc});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, StartsWith("error: INVALID_ARGUMENT: "));

  std::string corrupt = ReadFile(GoldenPath("v1_f32_none.kvc"));
  corrupt[corrupt.size() - 10] ^= 0x5a;
  WriteFile(dir_ + "/corrupt.kvc", corrupt);
  EXPECT_EQ(RunRaw({"cache", "inspect", dir_ + "/corrupt.kvc"}).exit_code, 0);  // the header is intact
  CliResult verified = RunRaw({"cache", "inspect", dir_ + "/corrupt.kvc", "--verify"});
  EXPECT_EQ(verified.exit_code, 1);
  EXPECT_THAT(verified.err, StartsWith("error: DATA_LOSS: "));
}

TEST_F(KvcCliTest, CacheInspectStatGetPutRmOfStoredCaches) {
  const std::vector<std::string> ids = StoreGoldenFiles();
  const std::string golden = ReadFile(GoldenPath(GoldenNames()[1]));

  CliResult inspect = Run({"cache", "inspect", ids[1]});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_THAT(inspect.out, StartsWith("cache_id: " + ids[1] + "\n"));
  EXPECT_THAT(inspect.out, HasSubstr("\ndtype: bf16\n"));
  EXPECT_THAT(inspect.out, HasSubstr("\ncodec: zstd\n"));

  CliResult stat = Run({"cache", "stat", ids[1]});
  ASSERT_EQ(stat.exit_code, 0) << stat.err;
  EXPECT_THAT(stat.out, StartsWith(absl::StrCat("cache_id: ", ids[1], "\nbytes: ", golden.size(), "\ncreated: ")));
  EXPECT_THAT(stat.out, ::testing::Not(HasSubstr("dtype:")));
  EXPECT_THAT(Run({"cache", "stat", ids[1], "--info"}).out, HasSubstr("\ndtype: bf16\n"));

  const std::string path = dir_ + "/fetched.kvc";
  CliResult get = Run({"cache", "get", ids[1], "-o", path});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, absl::StrCat("wrote ", golden.size(), " bytes to ", path, "\n"));
  EXPECT_TRUE(ReadFile(path) == golden);
  CliResult to_stdout = Run({"cache", "get", ids[1], "-o", "-"});
  EXPECT_TRUE(to_stdout.out == golden);

  const std::string new_id(64, '7');
  CliResult put = Run({"cache", "put", path, "--id", new_id});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  EXPECT_THAT(put.out, StartsWith("cache_id: " + new_id + "\nreplaced: false\n"));
  CliResult rm = Run({"cache", "rm", new_id, ids[0]});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_EQ(rm.out, "deleted " + new_id + "\ndeleted " + ids[0] + "\n");
  CliResult again = Run({"cache", "rm", new_id});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, StartsWith("error: NOT_FOUND: " + new_id + ": "));
}

// ---- exit codes ----

TEST_F(KvcCliTest, UsageErrorsExitWith2) {
  const std::string bad_jsonl = dir_ + "/bad.jsonl";
  WriteFile(bad_jsonl, "{\"id\": \"a\", \"text\": \"ok\"}\n{not json}\n");
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"no-such-command"},
      {"cache"},
      {"cache", "get"},
      {"compress", "--ratio", "eight"},
      {"compress", "--ratio", "8", "--target-tokens", "10"},
      {"compress", "--dtype", "f64"},
      {"compress", "--option", "chunk_tokens"},
      {"compress", dir_ + "/absent.txt"},
      {"generate", "--query", "q"},
      {"ask", "--ratio", "8"},
      {"precompute", "--mode", "bogus"},
      {"precompute", bad_jsonl, "--mode", "full"},
      {"cache", "inspect", "neither-a-file-nor-an-id"},
      {"--timeout", "-1", "model"},
      {"--tls-cert", bad_jsonl, "health"},
      {"health", "--bogus-flag"},
  };
  for (const std::vector<std::string>& args : cases) {
    CliResult r = Run(args);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_FALSE(r.err.empty()) << absl::StrJoin(args, " ");
  }
  EXPECT_EQ(server_->compressor().calls(), 0);
  CliResult jsonl = Run({"precompute", bad_jsonl, "--mode", "full"});
  EXPECT_THAT(jsonl.err, HasSubstr("bad.jsonl:2: not valid JSON"));
}

TEST_F(KvcCliTest, HelpReadsLikeAManual) {
  CliResult root = RunRaw({"--help"});
  EXPECT_EQ(root.exit_code, 0);
  for (const char* text : {"Usage: kvc", "--server", "KVC_SERVER", "--token", "--tls-ca", "--timeout", "--json",
                           "compress", "generate", "ask", "precompute", "cache", "health", "model",
                           "Exit status: 0 success; 1 error"}) {
    EXPECT_THAT(root.out, HasSubstr(text));
  }
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"compress", "--help"}, {"generate", "--help"}, {"ask", "--help"}, {"precompute", "--help"},
           {"cache", "--help"}, {"cache", "ls", "--help"}, {"cache", "inspect", "--help"}, {"health", "--help"},
           {"model", "--help"}}) {
    CliResult r = RunRaw(args);
    EXPECT_EQ(r.exit_code, 0) << args[0];
    EXPECT_THAT(r.out, HasSubstr("Usage: kvc ")) << args[0];
  }
  EXPECT_THAT(RunRaw({"precompute", "--help"}).out, HasSubstr("Resumable"));
  EXPECT_THAT(RunRaw({"compress", "--help"}).out, HasSubstr("Examples:"));
}

TEST_F(KvcCliTest, RpcErrorsExitWith1AndNameTheCode) {
  CliResult missing = Run({"cache", "stat", std::string(64, '0')});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, StartsWith("error: NOT_FOUND: "));
  CliResult malformed = Run({"cache", "stat", "xyz"});
  EXPECT_EQ(malformed.exit_code, 1);
  EXPECT_THAT(malformed.err, StartsWith("error: INVALID_ARGUMENT: "));
  EXPECT_THAT(malformed.err, HasSubstr("cache_id"));
  CliResult down = RunRaw({"--server", "127.0.0.1:1", "--retries", "0", "cache", "ls"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_THAT(down.err, StartsWith("error: UNAVAILABLE: "));
  server_->compressor().FailNext({grpc::Status(grpc::OUT_OF_RANGE, "spec.ratio: 0.5 is below 1")});
  CliResult range = Run({"compress", "--ratio", "0.5", "-q", "q"}, "doc");
  EXPECT_EQ(range.exit_code, 1);
  EXPECT_EQ(range.err, "error: OUT_OF_RANGE: spec.ratio: 0.5 is below 1\n");
}

// ---- health ----

TEST_F(KvcCliTest, HealthPerRole) {
  CliResult all = Run({"health"});
  EXPECT_EQ(all.exit_code, 0) << all.err;
  EXPECT_EQ(all.out,
            "overall: SERVING\n"
            "compress (kvc.v1.Compressor): SERVING\n"
            "cache (kvc.v1.CacheService): SERVING\n"
            "generate (kvc.v1.Generator): SERVING\n");

  server_->SetServing("kvc.v1.Compressor", false);
  CliResult loading = Run({"health"});
  EXPECT_EQ(loading.exit_code, 1);
  EXPECT_THAT(loading.out, HasSubstr("compress (kvc.v1.Compressor): NOT_SERVING\n"));
  CliResult cache_only = Run({"health", "--service", "cache"});
  EXPECT_EQ(cache_only.exit_code, 0);
  EXPECT_EQ(cache_only.out, "cache (kvc.v1.CacheService): SERVING\n");

  TestServerOptions cache_role;
  cache_role.healthy_services = {"kvc.v1.CacheService"};
  StartServer(cache_role);
  CliResult partial = Run({"health"});
  EXPECT_EQ(partial.exit_code, 0) << partial.out;
  EXPECT_THAT(partial.out, HasSubstr("generate (kvc.v1.Generator): NOT_SERVED\n"));
  EXPECT_EQ(Run({"health", "-s", "generate"}).exit_code, 1);
  CliResult json = Run({"--json", "health", "-s", "overall", "-s", "cache"});
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["healthy"], true);
  ASSERT_EQ(j["services"].size(), 2u);
  EXPECT_EQ(j["services"][1]["service"], "kvc.v1.CacheService");
  EXPECT_EQ(j["services"][1]["status"], "SERVING");
}

// ---- compress, generate, ask, model ----

TEST_F(KvcCliTest, CompressPrintsTheIdAndInfo) {
  const std::string doc = dir_ + "/doc.txt";
  WriteFile(doc, "The company was founded in 1999 by Ada Lovelace.");
  CliResult r = Run({"compress", doc, "-", "--query", "Who founded it?", "--ratio", "4", "--option",
                     "chunk_tokens=512", "--dtype", "bf16", "--codec", "zstd", "--system-prompt", ""},
                    "second document from stdin");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_GE(lines.size(), 3u);
  EXPECT_THAT(lines[0], ::testing::MatchesRegex("cache_id: [0-9a-f]{64}"));
  EXPECT_EQ(lines[1], "cache_hit: false");
  EXPECT_EQ(lines[2], "model: fake-model");
  EXPECT_THAT(r.out, HasSubstr("\nbudget: ratio=4\n"));
  EXPECT_THAT(r.out, HasSubstr("\ntimings: queue=0.000s tokenize=0.000s prefill=0.250s"));

  const kvc::v1::CompressRequest sent = server_->compressor().last_compress_request();
  ASSERT_EQ(sent.documents_size(), 2);
  EXPECT_EQ(sent.documents(0).text(), "The company was founded in 1999 by Ada Lovelace.");
  EXPECT_EQ(sent.documents(1).text(), "second document from stdin");
  EXPECT_EQ(sent.query(), "Who founded it?");
  EXPECT_EQ(sent.spec().ratio(), 4.0);
  EXPECT_EQ(sent.spec().options().at("chunk_tokens"), "512");
  EXPECT_EQ(sent.cache_dtype(), kvc::v1::CACHE_DTYPE_BF16);
  EXPECT_EQ(sent.cache_codec(), kvc::v1::CACHE_CODEC_ZSTD);
  EXPECT_TRUE(sent.has_system_prompt());
  EXPECT_EQ(sent.system_prompt(), "");

  CliResult id_only = Run({"compress", doc, "-q", "Who founded it?", "--ratio", "4", "--id-only"});
  ASSERT_EQ(id_only.exit_code, 0);
  EXPECT_THAT(id_only.out, ::testing::MatchesRegex("[0-9a-f]{64}\n"));
  const nlohmann::json j =
      nlohmann::json::parse(Run({"--json", "compress", doc, "-q", "Who founded it?", "--ratio", "4"}).out);
  EXPECT_EQ(j["cache_hit"], true);  // same request as --id-only
  EXPECT_EQ(j["cache_id"].get<std::string>() + "\n", id_only.out);
  EXPECT_EQ(j["info"]["spec"]["ratio"], 4.0);
  EXPECT_FALSE(server_->compressor().last_compress_request().has_system_prompt());
}

TEST_F(KvcCliTest, GenerateStreamsTheAnswerAndReportsUsage) {
  const std::string id(64, 'a');
  CliResult r = Run({"generate", "--cache-id", id, "-c", std::string(64, 'b'), "--query", "Who?", "--max-tokens",
                     "16", "--stop", "END", "--temperature", "0.5", "--seed", "7", "--ignore-eos"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "Hello, world\n");
  EXPECT_THAT(r.err, StartsWith("usage: cached_tokens=40 prompt_tokens=7 generated_tokens=3 finish=eos "
                                "time_to_first_token=0.125s\ngenerate timings: "));
  EXPECT_THAT(r.err, HasSubstr("tokens_per_second=4.0"));
  const kvc::v1::GenerateRequest sent = server_->generator().last_request();
  ASSERT_EQ(sent.cache_ids_size(), 2);
  EXPECT_EQ(sent.cache_ids(0), id);
  EXPECT_EQ(sent.sampling().max_tokens(), 16);
  EXPECT_EQ(sent.sampling().temperature(), 0.5);
  EXPECT_EQ(sent.sampling().seed(), 7u);
  EXPECT_FALSE(sent.sampling().stop_on_eos());
  ASSERT_EQ(sent.sampling().stop_size(), 1);

  server_->generator().FailAfterFirstDelta(grpc::Status(grpc::CANCELLED, "client went away"));
  CliResult broken = Run({"generate", "-c", id, "-q", "Who?"});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_EQ(broken.out, "Hello\n");
  EXPECT_EQ(broken.err, "error: CANCELLED: client went away\n");

  const nlohmann::json j = nlohmann::json::parse(Run({"--json", "generate", "-c", id, "-q", "Who?"}).out);
  EXPECT_EQ(j["text"], "Hello, world");
  EXPECT_EQ(j["usage"]["finish_reason"], "eos");
  EXPECT_EQ(j["token_ids"].size(), 3u);
}

TEST_F(KvcCliTest, GenerateAnswersSeveralQuestionsInOneCall) {
  const std::string id(64, 'a');
  CliResult r = Run({"generate", "-c", id, "-q", "Who?", "--query", "When?"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[1] Who?\nHello, world\n[2] When?\nHello, world\n");
  const std::vector<std::string> err = Lines(r.err);
  ASSERT_EQ(err.size(), 4u) << r.err;
  EXPECT_THAT(err[0], StartsWith("usage[1]: cached_tokens=40 prompt_tokens=7 generated_tokens=3 finish=eos"));
  EXPECT_THAT(err[1], StartsWith("generate timings[1]: "));
  EXPECT_THAT(err[2], StartsWith("usage[2]: "));
  EXPECT_THAT(err[3], StartsWith("generate timings[2]: "));
  const kvc::v1::GenerateRequest sent = server_->generator().last_request();
  EXPECT_EQ(server_->generator().calls(), 1);
  EXPECT_EQ(sent.query(), "");
  ASSERT_EQ(sent.questions().queries_size(), 2);
  EXPECT_EQ(sent.questions().queries(0), "Who?");
  EXPECT_EQ(sent.questions().queries(1), "When?");

  const nlohmann::json j = nlohmann::json::parse(Run({"--json", "generate", "-c", id, "-q", "Who?", "-q", "When?"}).out);
  ASSERT_EQ(j["answers"].size(), 2u);
  EXPECT_EQ(j["answers"][1]["question"], "When?");
  EXPECT_EQ(j["answers"][1]["text"], "Hello, world");
  EXPECT_EQ(j["answers"][1]["usage"]["finish_reason"], "eos");
  EXPECT_TRUE(j.contains("wall_seconds"));

  // A stream that breaks in the first answer: what came is printed, then the error.
  server_->generator().FailAfterFirstDelta(grpc::Status(grpc::CANCELLED, "gone"));
  CliResult broken = Run({"generate", "-c", id, "-q", "Who?", "-q", "When?"});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_EQ(broken.out, "[1] Who?\nHello\n");
  EXPECT_THAT(broken.err, HasSubstr("CANCELLED: gone"));
}

TEST_F(KvcCliTest, AskCompressesThenGenerates) {
  const std::string doc = dir_ + "/doc.txt";
  WriteFile(doc, std::string(400, 'x'));
  CliResult r = Run({"ask", doc, "--query", "What?", "--ratio", "4", "--max-tokens", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "Hello, world\n");
  const std::vector<std::string> err = Lines(r.err);
  ASSERT_EQ(err.size(), 5u) << r.err;
  EXPECT_THAT(err[0], ::testing::MatchesRegex("compression: 400 -> 100 tokens \\(4.00x\\), method focus, "
                                              "cache_hit false, cache_id [0-9a-f]{64}"));
  EXPECT_THAT(err[1], StartsWith("compress timings: queue="));
  EXPECT_THAT(err[2], StartsWith("usage: cached_tokens="));
  EXPECT_THAT(err[3], StartsWith("generate timings: queue="));
  EXPECT_THAT(err[4], ::testing::MatchesRegex("wall: compress=[0-9.]+s generate=[0-9.]+s total=[0-9.]+s"));
  const kvc::v1::GenerateRequest sent = server_->generator().last_request();
  EXPECT_EQ(sent.query(), "What?");
  EXPECT_EQ(sent.sampling().max_tokens(), 8);
  ASSERT_EQ(sent.cache_ids_size(), 1);
  EXPECT_THAT(err[0], HasSubstr(sent.cache_ids(0)));

  const nlohmann::json j = nlohmann::json::parse(Run({"--json", "ask", doc, "-q", "What?", "--ratio", "4"}).out);
  EXPECT_EQ(j["answer"], "Hello, world");
  EXPECT_EQ(j["cache_hit"], true);
  EXPECT_EQ(j["info"]["tokens_in"], 400);
}

TEST_F(KvcCliTest, ModelDescribesTheServer) {
  CliResult r = Run({"model"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("name: fake-model\nfingerprint: ffff"));
  EXPECT_THAT(r.out, HasSubstr("\nmethods:\n  finch (query-aware)\n"
                               "    chunk_tokens = 2048  # Tokens per prefill chunk\n"
                               "  knorm\n"));
  const nlohmann::json j = nlohmann::json::parse(Run({"--json", "model"}).out);
  EXPECT_EQ(j["num_layers"], 2);
  EXPECT_EQ(j["methods"][0]["options"][0]["default_value"], "2048");
}

// ---- precompute ----

TEST_F(KvcCliTest, PrecomputeIsResumable) {
  const std::string input = dir_ + "/docs.jsonl", output = dir_ + "/results.jsonl";
  std::string jsonl;
  for (int i = 0; i < 7; ++i) absl::StrAppend(&jsonl, "{\"id\": \"doc-", i, "\", \"text\": \"document ", i, "\"}\n");
  absl::StrAppend(&jsonl, "{\"id\": \"tokens\", \"token_ids\": [5, 6, 7]}\n");
  WriteFile(input, jsonl);

  CliResult first = Run({"precompute", input, "--mode", "full", "-j", "3", "--output", output});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.err, HasSubstr("8/8 100.0%"));
  EXPECT_THAT(first.err, HasSubstr("precompute: 8 documents: 8 computed, 0 hits, 0 skipped"));
  EXPECT_EQ(server_->compressor().precomputed_documents(), 8);
  std::set<std::string> ids;
  for (const std::string& line : Lines(ReadFile(output))) {
    const nlohmann::json j = nlohmann::json::parse(line);
    ids.insert(j["id"].get<std::string>());
    EXPECT_EQ(j["cache_id"].get<std::string>().size(), 64u);
    EXPECT_EQ(j["cache_hit"], false);
    EXPECT_GT(j["tokens_in"].get<int64_t>(), 0);
  }
  EXPECT_EQ(ids.size(), 8u);
  EXPECT_EQ(ids.count("tokens"), 1u);

  // Everything is in the results file: no request at all.
  const int calls = server_->compressor().calls();
  CliResult second = Run({"precompute", input, "--mode", "full", "--output", output});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.err, HasSubstr("8 documents: 0 computed, 0 hits, 8 skipped"));
  EXPECT_EQ(server_->compressor().calls(), calls);
  EXPECT_EQ(Lines(ReadFile(output)).size(), 8u);

  // Without the results file the server finds the caches stored: hits, no compute.
  CliResult third = Run({"--json", "precompute", input, "--mode", "full", "--batch-size", "3", "--no-progress"});
  ASSERT_EQ(third.exit_code, 0) << third.err;
  EXPECT_EQ(Lines(third.out).size(), 8u);  // results on stdout
  const nlohmann::json summary = nlohmann::json::parse(third.err);
  EXPECT_EQ(summary["hits"], 8);
  EXPECT_EQ(summary["computed"], 0);
  EXPECT_EQ(server_->compressor().precomputed_documents(), 8);

  // A document the server refuses fails alone; a rerun retries only it.
  WriteFile(input, jsonl + "{\"id\": \"empty\", \"text\": \"\"}\n{\"id\": \"new\", \"text\": \"fresh\"}\n");
  CliResult partial = Run({"precompute", input, "--mode", "full", "--output", output});
  EXPECT_EQ(partial.exit_code, 1);
  EXPECT_THAT(partial.err, HasSubstr("error: documents empty: INVALID_ARGUMENT: "));
  EXPECT_THAT(partial.err,
              HasSubstr("10 documents: 1 computed, 0 hits, 8 skipped (already in the results file), 1 failed"));
  EXPECT_EQ(Lines(ReadFile(output)).size(), 9u);
}

TEST_F(KvcCliTest, PrecomputeStopsOnErrorsEveryRequestWouldHit) {
  const std::string input = dir_ + "/docs.jsonl";
  std::string jsonl;
  for (int i = 0; i < 20; ++i) absl::StrAppend(&jsonl, "{\"text\": \"document ", i, "\"}\n");
  WriteFile(input, jsonl);
  server_->compressor().FailNext({grpc::Status(grpc::FAILED_PRECONDITION, "model: not the loaded model")});
  CliResult r = Run({"precompute", input, "--mode", "full", "-j", "1", "--model", "other"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: documents 1: FAILED_PRECONDITION: model: not the loaded model"));
  EXPECT_THAT(r.err,
              HasSubstr("0 computed, 0 hits, 0 skipped (already in the results file), 1 failed, 19 not attempted"));
  EXPECT_EQ(server_->compressor().calls(), 1);
}

// ---- auth ----

TEST_F(KvcCliTest, TokenFromFlagOrEnvironment) {
  TestServerOptions options;
  options.tokens = {"s3cret"};
  StartServer(options);
  CliResult none = Run({"cache", "ls"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, StartsWith("error: UNAUTHENTICATED: "));
  EXPECT_EQ(Run({"--token", "s3cret", "cache", "ls"}).exit_code, 0);
  CliResult env = RunRaw({"cache", "ls"}, "", "KVC_SERVER=" + server_->target() + " KVC_TOKEN=s3cret");
  EXPECT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(Run({"health"}).exit_code, 0);  // health needs no token
}

TEST_F(KvcCliTest, MutualTlsFlags) {
  absl::StatusOr<kvc::testing::TestCerts> certs = kvc::testing::TestCertificates();
  ASSERT_TRUE(certs.ok()) << certs.status();
  TestServerOptions options;
  options.tls = {certs->server_cert, certs->server_key, certs->ca};
  StartServer(options);
  CliResult ok = Run({"--tls-ca", certs->ca, "--tls-cert", certs->client_cert, "--tls-key", certs->client_key,
                      "--tls-server-name", "localhost", "cache", "ls"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  CliResult env = RunRaw({"cache", "ls"}, "",
                         absl::StrCat("KVC_SERVER=", server_->target(), " KVC_TLS_CA=", certs->ca,
                                      " KVC_TLS_CERT=", certs->client_cert, " KVC_TLS_KEY=", certs->client_key));
  EXPECT_EQ(env.exit_code, 0) << env.err;
  CliResult plaintext = Run({"--retries", "0", "--timeout", "10", "cache", "ls"});
  EXPECT_EQ(plaintext.exit_code, 1);
  EXPECT_THAT(plaintext.err, StartsWith("error: UNAVAILABLE: "));
}

}  // namespace
}  // namespace kvc
