// kvc-server's configuration: command-line flags, each with a KVC_* environment variable that is used
// when the flag is absent (flags win). Parsing validates every value, so a bad deployment fails at start
// with a message that names the flag.
#ifndef KVC_SERVICE_SERVER_CONFIG_H_
#define KVC_SERVICE_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvc {

struct ServerConfig {
  std::vector<std::string> roles = {"compress", "cache", "generate"};
  std::string model;  // empty: the packaged SmolLM2, found without a flag
  std::string store = "file://./kvc-data";
  std::string listen = "0.0.0.0:50051";
  std::string metrics_listen = "0.0.0.0:9464";  // empty: no metrics endpoint
  std::string device = "cpu";
  std::string dtype;  // empty: float32 on CPU, bfloat16 on CUDA
  std::string weights = "float";  // "float", "q4" or "int8" (the last two CPU only)
  int threads = 0;    // intra-op threads for CPU; 0: LibTorch's default
  int64_t max_queue_tokens = 1 << 18;
  int64_t max_context_tokens = 131072;  // prefix + documents of one request
  int64_t max_message_bytes = int64_t{64} << 20;
  int64_t store_capacity_bytes = 0;  // file store; 0: unlimited
  double drain_seconds = 30;
  std::string tls_cert, tls_key, tls_client_ca;
  std::string auth_token_file;  // one bearer token per line; KVC_AUTH_TOKENS may also list tokens
  std::string log_format = "text";
  // Test hook (pause_points.h): the control directory of the points that hold calls. Hidden from --help
  // and empty in service.
  std::string test_pause_dir;
};

// Bearer tokens, comma-separated; read by the server when --auth-token-file is absent.
inline constexpr char kAuthTokensVariable[] = "KVC_AUTH_TOKENS";

struct ParsedServerConfig {
  ServerConfig config;
  bool help = false;          // --help was given: print `text` and exit 0
  bool check_config = false;  // --check-config was given: check the configuration (config_check.h) and exit
  std::string text;           // the manual (for --help)
  // Every KVC_* variable the server reads, so that a check can name the ones in an environment that it
  // would ignore (a misspelt variable is otherwise silently a default).
  std::vector<std::string> environment_variables;
};

// argv as main receives it. INVALID_ARGUMENT naming the flag for a bad or unknown flag or value.
absl::StatusOr<ParsedServerConfig> ParseServerConfig(int argc, const char* const* argv);

}  // namespace kvc

#endif  // KVC_SERVICE_SERVER_CONFIG_H_
