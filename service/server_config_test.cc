// kvc-server's flags: defaults, flags, environment fallbacks, and a precise error for each bad value.
#include "service/server_config.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

absl::StatusOr<ParsedServerConfig> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "kvc-server");
  return ParseServerConfig(static_cast<int>(args.size()), args.data());
}

TEST(ServerConfigTest, DefaultsRunEverythingWithTheEmbeddedModel) {
  auto p = Parse({});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->config.roles, (std::vector<std::string>{"compress", "cache", "generate"}));
  EXPECT_EQ(p->config.model, "");
  EXPECT_EQ(p->config.store, "file://./kvc-data");
  EXPECT_EQ(p->config.listen, "0.0.0.0:50051");
  EXPECT_FALSE(p->help);
}

TEST(ServerConfigTest, FlagsWinOverTheEnvironment) {
  ::setenv("KVC_STORE", "redis://127.0.0.1:6379/0", 1);
  ::setenv("KVC_MAX_QUEUE_TOKENS", "5000", 1);
  auto p = Parse({"--roles", "cache,generate", "--max-queue-tokens", "9000", "--log-format=json"});
  ::unsetenv("KVC_STORE");
  ::unsetenv("KVC_MAX_QUEUE_TOKENS");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->config.store, "redis://127.0.0.1:6379/0");
  EXPECT_EQ(p->config.max_queue_tokens, 9000);
  EXPECT_EQ(p->config.roles, (std::vector<std::string>{"cache", "generate"}));
  EXPECT_EQ(p->config.log_format, "json");
}

TEST(ServerConfigTest, HelpReadsLikeAManual) {
  auto p = Parse({"--help"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->help);
  for (const char* s : {"--roles", "--model", "--store", "--listen", "--metrics-listen", "--device", "--dtype", "--weights",
                        "--max-queue-tokens", "--max-context-tokens", "--tls-cert", "--tls-key", "--tls-client-ca", "--auth-token-file",
                        "--log-format", "KVC_STORE", "SIGTERM", "SmolLM2"}) {
    EXPECT_TRUE(absl::StrContains(p->text, s)) << s;
  }
}

TEST(ServerConfigTest, BadValuesNameTheirFlag) {
  const std::vector<std::pair<std::vector<const char*>, const char*>> cases = {
      {{"--roles", "compress,train"}, "--roles"},
      {{"--store", "s3://bucket"}, "--store"},
      {{"--listen", "50051"}, "--listen"},
      {{"--metrics-listen", "localhost:http"}, "--metrics-listen"},
      {{"--device", "tpu"}, "--device"},
      {{"--dtype", "int4"}, "--dtype"},
      {{"--weights", "int3"}, "--weights"},
      {{"--weights", "q4", "--device", "cuda"}, "--weights"},
      {{"--weights", "int8", "--device", "cuda:1"}, "--weights"},
      {{"--max-queue-tokens", "0"}, "--max-queue-tokens"},
      {{"--max-context-tokens", "0"}, "--max-context-tokens"},
      {{"--max-queue-tokens", "lots"}, "max-queue-tokens"},
      {{"--max-message-bytes", "100"}, "--max-message-bytes"},
      {{"--tls-cert", "c.pem"}, "--tls-cert/--tls-key"},
      {{"--tls-client-ca", "ca.pem"}, "--tls-client-ca"},
      {{"--log-format", "xml"}, "--log-format"},
      {{"--no-such-flag"}, "no-such-flag"},
  };
  for (const auto& [args, flag] : cases) {
    auto p = Parse(args);
    ASSERT_FALSE(p.ok()) << flag;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
    EXPECT_TRUE(absl::StrContains(p.status().message(), flag)) << p.status();
  }
}

}  // namespace
}  // namespace kvc
