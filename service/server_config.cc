#include "service/server_config.h"

#include <CLI/CLI.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kvc {
namespace {

constexpr char kDescription[] = R"(kvc-server: context compression for RAG pipelines.

Runs any of three roles in one process, all of them by default:
  compress   Compressor service: tokenizes documents and a query, runs a chunked prefill of the model
             and keeps the KV pairs the query needs (Finch by default), then stores the cache.
  cache      CacheService: streams stored caches out and in (Get, Put, Stat, Delete, List).
  generate   Generator service: loads one or more caches, composes them and decodes an answer.

With no flags it serves everything on 0.0.0.0:50051 with the packaged SmolLM2-135M-Instruct model and a
file store under ./kvc-data, and exposes Prometheus metrics on 0.0.0.0:9464/metrics. Every flag has an
environment variable (shown as KVC_...) that is read when the flag is absent. SIGTERM stops accepting new
calls, drains the ones in flight (--drain-seconds) and exits 0.
)";

absl::Status Check(bool ok, const std::string& flag, const std::string& why) {
  return ok ? absl::OkStatus() : absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
}

bool HostPort(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  for (size_t i = colon + 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return std::stol(s.substr(colon + 1)) <= 65535;
}

absl::Status Validate(const ServerConfig& c) {
  for (const std::string& r : c.roles) {
    if (r != "compress" && r != "cache" && r != "generate") {
      return absl::InvalidArgumentError(absl::StrCat("--roles: unknown role \"", r, "\" (compress, cache, generate)"));
    }
  }
  if (absl::Status s = Check(!c.roles.empty(), "--roles", "at least one role"); !s.ok()) return s;
  const bool scheme = absl::StartsWith(c.store, "file://") || absl::StartsWith(c.store, "redis://") ||
                      absl::StartsWith(c.store, "memory://") || absl::StartsWith(c.store, "/") ||
                      absl::StartsWith(c.store, ".");
  if (absl::Status s = Check(scheme, "--store", "expected file://PATH, redis://HOST:PORT/DB or memory://"); !s.ok()) return s;
  if (absl::Status s = Check(HostPort(c.listen), "--listen", "expected HOST:PORT"); !s.ok()) return s;
  if (absl::Status s = Check(c.metrics_listen.empty() || HostPort(c.metrics_listen), "--metrics-listen",
                             "expected HOST:PORT, or empty for no metrics");
      !s.ok()) {
    return s;
  }
  const bool device = c.device == "cpu" || c.device == "cuda" || absl::StartsWith(c.device, "cuda:");
  if (absl::Status s = Check(device, "--device", "expected cpu, cuda or cuda:N"); !s.ok()) return s;
  const bool dtype = c.dtype.empty() || c.dtype == "float32" || c.dtype == "bfloat16" || c.dtype == "float16";
  if (absl::Status s = Check(dtype, "--dtype", "expected float32, bfloat16 or float16"); !s.ok()) return s;
  const bool weights = c.weights == "float" || c.weights == "q4" || c.weights == "int8";
  if (absl::Status s = Check(weights, "--weights", "expected float, q4 or int8"); !s.ok()) return s;
  if (absl::Status s = Check(c.weights == "float" || c.device == "cpu", "--weights",
                             absl::StrCat(c.weights, " runs on CPU only; use float with --device cuda"));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Check(c.threads >= 0, "--threads", "must be >= 0"); !s.ok()) return s;
  if (absl::Status s = Check(c.max_queue_tokens >= 1, "--max-queue-tokens", "must be >= 1"); !s.ok()) return s;
  if (absl::Status s = Check(c.max_context_tokens >= 1, "--max-context-tokens", "must be >= 1"); !s.ok()) return s;
  if (absl::Status s = Check(c.max_message_bytes >= (int64_t{4} << 20) && c.max_message_bytes <= (int64_t{2} << 30) - 1,
                             "--max-message-bytes", "must be between 4 MiB and 2 GiB");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Check(c.store_capacity_bytes >= 0, "--store-capacity-bytes", "must be >= 0"); !s.ok()) return s;
  if (absl::Status s = Check(c.drain_seconds >= 0, "--drain-seconds", "must be >= 0"); !s.ok()) return s;
  if (absl::Status s = Check(c.tls_cert.empty() == c.tls_key.empty(), "--tls-cert/--tls-key", "give both or neither");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Check(c.tls_client_ca.empty() || !c.tls_cert.empty(), "--tls-client-ca",
                             "mTLS needs --tls-cert and --tls-key too");
      !s.ok()) {
    return s;
  }
  return Check(c.log_format == "text" || c.log_format == "json", "--log-format", "expected text or json");
}

}  // namespace

absl::StatusOr<ParsedServerConfig> ParseServerConfig(int argc, const char* const* argv) {
  ParsedServerConfig out;
  ServerConfig& c = out.config;
  CLI::App app{kDescription, "kvc-server"};
  app.set_help_flag();  // handled below, so that parsing never exits the process
  bool help = false;
  app.add_flag("-h,--help", help, "Print this manual and exit");
  app.add_flag("--check-config", out.check_config,
               "Check the configuration (these flags and the KVC_* environment) and exit without serving: "
               "prints the effective settings and exits 0, or names the first problem and exits 2. Opens no "
               "port, file, model or store, so it runs anywhere the binary does (e.g. in CI against a "
               "deployment's manifests)");
  std::string roles = absl::StrJoin(c.roles, ",");
  app.add_option("--roles", roles, "Comma-separated roles to serve: compress, cache, generate")
      ->envname("KVC_ROLES")->capture_default_str();
  app.add_option("--model", c.model, "Model: a .gguf file, a safetensors file or a Hugging Face directory "
                                     "(default: the packaged SmolLM2-135M-Instruct)")->envname("KVC_MODEL");
  app.add_option("--store", c.store, "Cache store URI: file://PATH, redis://HOST:PORT/DB, memory://")
      ->envname("KVC_STORE")->capture_default_str();
  app.add_option("--store-capacity-bytes", c.store_capacity_bytes,
                 "File store capacity; least recently used caches are evicted past it (0: unlimited)")
      ->envname("KVC_STORE_CAPACITY_BYTES")->capture_default_str();
  app.add_option("--listen", c.listen, "gRPC address")->envname("KVC_LISTEN")->capture_default_str();
  app.add_option("--metrics-listen", c.metrics_listen, "Prometheus /metrics address (empty: off)")
      ->envname("KVC_METRICS_LISTEN")->capture_default_str();
  app.add_option("--device", c.device, "cpu, cuda or cuda:N")->envname("KVC_DEVICE")->capture_default_str();
  app.add_option("--dtype", c.dtype, "Model dtype: float32, bfloat16 or float16 (float16 on CUDA only; "
                                     "default: float32 on CPU, bfloat16 on CUDA)")->envname("KVC_DTYPE");
  app.add_option("--weights", c.weights,
                 "How linear layers keep their weights: float (the model dtype), q4 (4-bit groups, CPU only; "
                 "decodes several times faster, logits within bfloat16 rounding) or int8 (int8 weight rows, CPU "
                 "only; products on the int8 GEMM, prefill and Finch ~1.2x faster, logits within 0.08 of the "
                 "largest)")
      ->envname("KVC_WEIGHTS")->capture_default_str();
  app.add_option("--threads", c.threads, "CPU intra-op threads (0: LibTorch's default)")
      ->envname("KVC_THREADS")->capture_default_str();
  app.add_option("--max-queue-tokens", c.max_queue_tokens,
                 "Tokens allowed to wait for the device; beyond it requests get RESOURCE_EXHAUSTED")
      ->envname("KVC_MAX_QUEUE_TOKENS")->capture_default_str();
  app.add_option("--max-context-tokens", c.max_context_tokens,
                 "Largest context (prefix + documents) one request may compress; beyond it OUT_OF_RANGE")
      ->envname("KVC_MAX_CONTEXT_TOKENS")->capture_default_str();
  app.add_option("--max-message-bytes", c.max_message_bytes, "Largest gRPC message received or sent")
      ->envname("KVC_MAX_MESSAGE_BYTES")->capture_default_str();
  app.add_option("--drain-seconds", c.drain_seconds, "On SIGTERM, how long in-flight calls may take to finish")
      ->envname("KVC_DRAIN_SECONDS")->capture_default_str();
  app.add_option("--tls-cert", c.tls_cert, "Server certificate chain (PEM); enables TLS")->envname("KVC_TLS_CERT");
  app.add_option("--tls-key", c.tls_key, "Server private key (PEM)")->envname("KVC_TLS_KEY");
  app.add_option("--tls-client-ca", c.tls_client_ca, "CA bundle (PEM) that client certificates must chain to; "
                                                     "enables mTLS")->envname("KVC_TLS_CLIENT_CA");
  app.add_option("--auth-token-file", c.auth_token_file,
                 "File of accepted bearer tokens, one per line; KVC_AUTH_TOKENS (comma-separated) also works. "
                 "Without either, calls are not authenticated")->envname("KVC_AUTH_TOKEN_FILE");
  app.add_option("--log-format", c.log_format, "text or json")->envname("KVC_LOG_FORMAT")->capture_default_str();
  // For end-to-end tests only: no environment variable, so that no deployment turns it on by accident, and
  // no group, which keeps it out of the manual.
  app.add_option("--test-pause-dir", c.test_pause_dir, "")->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(absl::StrCat("kvc-server: ", e.what(), " (see --help)"));
  }
  out.text = app.help();
  out.help = help;
  if (help) return out;
  for (const CLI::Option* option : app.get_options()) {
    if (!option->get_envname().empty()) out.environment_variables.push_back(option->get_envname());
  }
  out.environment_variables.push_back(kAuthTokensVariable);
  c.roles.clear();
  for (absl::string_view r : absl::StrSplit(roles, ',', absl::SkipEmpty())) c.roles.emplace_back(r);
  if (absl::Status s = Validate(c); !s.ok()) return s;
  return out;
}

}  // namespace kvc
