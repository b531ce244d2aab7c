#include "client/cpp/cli/cli_context.h"

#include <cmath>
#include <ostream>

#include "absl/strings/str_cat.h"

namespace kvc::cli {

std::string ErrorLine(const absl::Status& status) {
  return absl::StrCat("error: ", absl::StatusCodeToString(status.code()), ": ", status.message());
}

absl::StatusOr<KvcClient*> CliContext::Client() {
  if (client_ != nullptr) return client_.get();
  ClientOptions options;
  options.target = flags_.server;
  options.bearer_token = flags_.token;
  options.tls_root_ca_file = flags_.tls_ca;
  options.tls_cert_file = flags_.tls_cert;
  options.tls_key_file = flags_.tls_key;
  options.tls_server_name = flags_.tls_server_name;
  options.default_deadline = flags_.timeout_seconds > 0 && std::isfinite(flags_.timeout_seconds)
                                 ? absl::Seconds(flags_.timeout_seconds)
                                 : absl::InfiniteDuration();
  options.retry.max_attempts = flags_.retries + 1;
  absl::StatusOr<std::unique_ptr<KvcClient>> client = KvcClient::Create(options);
  if (!client.ok()) return client.status();
  client_ = std::move(*client);
  return client_.get();
}

int CliContext::Fail(const absl::Status& status) {
  absl::MutexLock lock(&output_mu_);
  err_ << ErrorLine(status) << std::endl;
  return kExitError;
}

int CliContext::UsageError(const std::string& message) {
  absl::MutexLock lock(&output_mu_);
  err_ << "error: " << message << std::endl;
  return kExitUsage;
}

}  // namespace kvc::cli
