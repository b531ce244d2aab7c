// The dry run behind `kvc-server --check-config`: everything about a configuration that can be known
// without the machine it will run on. A deployment pipeline runs it against the flags and environment its
// manifests give the server, so that a misspelt flag, a KVC_* variable the server would ignore or a
// malformed store URI fails the pipeline instead of a rollout.
//
// What it does not do: open files (certificates, token files and the model are mounted only where the
// server runs), connect to the store, or bind ports. Those fail at start, with the same messages.
#ifndef KVC_SERVICE_CONFIG_CHECK_H_
#define KVC_SERVICE_CONFIG_CHECK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service/server_config.h"

namespace kvc {

// `parsed` comes from ParseServerConfig (which has already validated each value on its own); `environment`
// is the process's environment as NAME=VALUE strings. Returns the effective settings, one `--flag value`
// line each, with passwords and tokens masked. INVALID_ARGUMENT naming the variable or flag: a KVC_*
// variable the server does not read, a store URI that does not parse, KVC_AUTH_TOKENS with no token.
absl::StatusOr<std::string> CheckServerConfig(const ParsedServerConfig& parsed,
                                              const std::vector<std::string>& environment);

}  // namespace kvc

#endif  // KVC_SERVICE_CONFIG_CHECK_H_
