// kvc-server --check-config: what the dry run accepts, what it refuses and names, and what it prints.
#include "service/config_check.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

ParsedServerConfig Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "kvc-server");
  args.push_back("--check-config");
  absl::StatusOr<ParsedServerConfig> p = ParseServerConfig(static_cast<int>(args.size()), args.data());
  EXPECT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->check_config);
  return *p;
}

TEST(ConfigCheckTest, KnowsEveryVariableTheServerReads) {
  const ParsedServerConfig p = Parse({});
  for (const char* v : {"KVC_ROLES", "KVC_MODEL", "KVC_STORE", "KVC_LISTEN", "KVC_METRICS_LISTEN", "KVC_DEVICE",
                        "KVC_DRAIN_SECONDS", "KVC_TLS_CERT", "KVC_AUTH_TOKEN_FILE", "KVC_AUTH_TOKENS",
                        "KVC_LOG_FORMAT"}) {
    EXPECT_NE(std::find(p.environment_variables.begin(), p.environment_variables.end(), v),
              p.environment_variables.end())
        << v;
  }
}

TEST(ConfigCheckTest, AValidFleetConfigurationPrintsItsSettingsWithSecretsMasked) {
  const ParsedServerConfig p =
      Parse({"--roles", "compress", "--store", "redis://:s3cret@redis:6379/0", "--device", "cuda"});
  absl::StatusOr<std::string> out =
      CheckServerConfig(p, {"PATH=/usr/bin", "KVC_AUTH_TOKENS=tok-a,tok-b", "OMP_WAIT_POLICY=passive"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(absl::StrContains(*out, "--roles compress\n")) << *out;
  EXPECT_TRUE(absl::StrContains(*out, "--store redis://:***@redis:6379/0\n")) << *out;
  EXPECT_TRUE(absl::StrContains(*out, "--device cuda\n")) << *out;
  EXPECT_TRUE(absl::StrContains(*out, "auth: KVC_AUTH_TOKENS")) << *out;
  EXPECT_FALSE(absl::StrContains(*out, "s3cret")) << *out;
  EXPECT_FALSE(absl::StrContains(*out, "tok-a")) << *out;
}

TEST(ConfigCheckTest, AnUnknownKvcVariableIsNamed) {
  // A misspelt variable would otherwise leave the default in place without a word.
  absl::StatusOr<std::string> out = CheckServerConfig(Parse({}), {"KVC_DRAIN_SECOND=60", "KVC_STORE=memory://"});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(out.status().message(), "KVC_DRAIN_SECOND: not a kvc-server variable"))
      << out.status();
}

TEST(ConfigCheckTest, StoreUrisAreCheckedAsTheStoreWouldParseThem) {
  for (const char* bad : {"redis://h:port", "redis://h?x=1", "memory://x", "file://"}) {
    absl::StatusOr<std::string> out = CheckServerConfig(Parse({"--store", bad}), {});
    ASSERT_FALSE(out.ok()) << bad;
    EXPECT_TRUE(absl::StartsWith(out.status().message(), "--store")) << out.status();
  }
  for (const char* good : {"redis://redis:6379/0", "file:///var/lib/kvc", "memory://", "./data"}) {
    EXPECT_TRUE(CheckServerConfig(Parse({"--store", good}), {}).ok()) << good;
  }
}

TEST(ConfigCheckTest, AnEmptyTokenListIsRefusedUnlessATokenFileIsGiven) {
  absl::StatusOr<std::string> out = CheckServerConfig(Parse({}), {"KVC_AUTH_TOKENS= , "});
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(absl::StartsWith(out.status().message(), "KVC_AUTH_TOKENS")) << out.status();
  // The file wins over the variable, and the file is read only where the server runs.
  EXPECT_TRUE(CheckServerConfig(Parse({"--auth-token-file", "/etc/kvc/tokens"}), {"KVC_AUTH_TOKENS="}).ok());
}

}  // namespace
}  // namespace kvc
