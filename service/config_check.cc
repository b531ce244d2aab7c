#include "service/config_check.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "service/auth.h"
#include "service/store/cache_store.h"
#include "service/store/redis_store.h"

namespace kvc {
namespace {

absl::Status CheckEnvironmentNames(const ParsedServerConfig& parsed, const std::vector<std::string>& environment) {
  const std::vector<std::string>& known = parsed.environment_variables;
  for (const std::string& entry : environment) {
    const std::string name = entry.substr(0, entry.find('='));
    if (!absl::StartsWith(name, "KVC_")) continue;
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": not a kvc-server variable, so the server would ignore it (it reads ", absl::StrJoin(known, ", "),
          ")"));
    }
  }
  return absl::OkStatus();
}

// The same rules as OpenCacheStore, without opening anything.
absl::Status CheckStoreUri(const std::string& uri) {
  if (absl::StartsWith(uri, "redis://")) {
    absl::Status s = ParseRedisUri(uri).status();
    return s.ok() ? s : absl::InvalidArgumentError(absl::StrCat("--store: ", s.message()));
  }
  if (absl::StartsWith(uri, "memory://") && uri != "memory://") {
    return absl::InvalidArgumentError("--store: memory:// takes no path");
  }
  if (uri == "file://") return absl::InvalidArgumentError("--store: file:// needs a directory");
  return absl::OkStatus();
}

absl::Status CheckTokens(const ServerConfig& c, const std::vector<std::string>& environment) {
  if (!c.auth_token_file.empty()) return absl::OkStatus();  // the file wins; it is read at start
  const std::string prefix = absl::StrCat(kAuthTokensVariable, "=");
  for (const std::string& entry : environment) {
    if (!absl::StartsWith(entry, prefix)) continue;
    std::vector<std::string> tokens;
    for (absl::string_view t : absl::StrSplit(entry.substr(prefix.size()), ',', absl::SkipWhitespace())) {
      tokens.emplace_back(t);
    }
    // An empty list would start an open server where the deployment meant a closed one.
    absl::Status s = BearerTokens::FromList(tokens).status();
    return s.ok() ? s : absl::InvalidArgumentError(absl::StrCat(kAuthTokensVariable, ": ", s.message()));
  }
  return absl::OkStatus();
}

bool HasVariable(const std::vector<std::string>& environment, absl::string_view name) {
  return std::any_of(environment.begin(), environment.end(),
                     [&](const std::string& e) { return absl::StartsWith(e, absl::StrCat(name, "=")); });
}

std::string Describe(const ServerConfig& c, const std::vector<std::string>& environment) {
  auto or_default = [](const std::string& v, const char* fallback) { return v.empty() ? std::string(fallback) : v; };
  std::string auth = "none (calls are not authenticated)";
  if (!c.auth_token_file.empty()) {
    auth = absl::StrCat("--auth-token-file ", c.auth_token_file);
  } else if (HasVariable(environment, kAuthTokensVariable)) {
    auth = absl::StrCat(kAuthTokensVariable, " (tokens not shown)");
  }
  std::string tls = "off";
  if (!c.tls_cert.empty()) {
    tls = absl::StrCat("--tls-cert ", c.tls_cert, " --tls-key ", c.tls_key,
                       c.tls_client_ca.empty() ? "" : absl::StrCat(" --tls-client-ca ", c.tls_client_ca));
  }
  return absl::StrCat(
      "--roles ", absl::StrJoin(c.roles, ","), "\n",
      "--model ", or_default(c.model, "(the packaged SmolLM2-135M-Instruct)"), "\n",
      "--store ", StoreUriForDisplay(c.store), "\n",
      "--store-capacity-bytes ", c.store_capacity_bytes, "\n",
      "--listen ", c.listen, "\n",
      "--metrics-listen ", or_default(c.metrics_listen, "(off)"), "\n",
      "--device ", c.device, "\n",
      "--dtype ", or_default(c.dtype, "(float32 on CPU, bfloat16 on CUDA)"), "\n",
      "--weights ", c.weights, "\n",
      "--threads ", c.threads, "\n",
      "--max-queue-tokens ", c.max_queue_tokens, "\n",
      "--max-context-tokens ", c.max_context_tokens, "\n",
      "--max-message-bytes ", c.max_message_bytes, "\n",
      "--drain-seconds ", c.drain_seconds, "\n",
      "tls: ", tls, "\n",
      "auth: ", auth, "\n",
      "--log-format ", c.log_format, "\n");
}

}  // namespace

absl::StatusOr<std::string> CheckServerConfig(const ParsedServerConfig& parsed,
                                              const std::vector<std::string>& environment) {
  if (absl::Status s = CheckEnvironmentNames(parsed, environment); !s.ok()) return s;
  if (absl::Status s = CheckStoreUri(parsed.config.store); !s.ok()) return s;
  if (absl::Status s = CheckTokens(parsed.config, environment); !s.ok()) return s;
  return Describe(parsed.config, environment);
}

}  // namespace kvc
