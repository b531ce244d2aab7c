// What every `kvc` subcommand shares: the global flags, the output streams, the client built from the
// flags, and the exit codes (docs/cli.md).
//
// Ownership: the context owns the client, created on first use so that commands that need no server
// (`cache inspect FILE`) never make one. It borrows the streams (stdin, stdout, stderr in the binary).
// Thread safety: Client() must first be called from one thread; the client it returns is thread-safe.
// Writes to the streams from several threads go through Locked().
#ifndef KVC_CLIENT_CPP_CLI_CLI_CONTEXT_H_
#define KVC_CLIENT_CPP_CLI_CLI_CONTEXT_H_

#include <iosfwd>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/cpp/kvc_client.h"

namespace kvc::cli {

inline constexpr int kExitOk = 0;
// The server (or the connection) answered with an error, or a check on what it sent failed.
inline constexpr int kExitError = 1;
// The command line or an input file is wrong; nothing was sent.
inline constexpr int kExitUsage = 2;

struct GlobalFlags {
  std::string server = "localhost:50051";
  std::string token;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  // Per call, retries included. 0: none.
  double timeout_seconds = 300;
  // Extra attempts on UNAVAILABLE.
  int retries = 3;
  bool json = false;
};

class CliContext {
 public:
  CliContext(std::istream& in, std::ostream& out, std::ostream& err) : in_(in), out_(out), err_(err) {}

  GlobalFlags& flags() { return flags_; }
  const GlobalFlags& flags() const { return flags_; }
  bool json() const { return flags_.json; }
  std::istream& in() { return in_; }
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }
  // Serializes writes from worker threads (precompute).
  absl::Mutex& output_mutex() { return output_mu_; }

  // The client for the global flags, made on first call.
  absl::StatusOr<KvcClient*> Client();

  // Prints "error: <CODE>: <message>" to err() and returns kExitError.
  int Fail(const absl::Status& status);
  // Prints "error: <message>" to err() and returns kExitUsage.
  int UsageError(const std::string& message);

 private:
  std::istream& in_;
  std::ostream& out_;
  std::ostream& err_;
  GlobalFlags flags_;
  absl::Mutex output_mu_;
  std::unique_ptr<KvcClient> client_;
};

// "error: <CODE>: <message>", CODE as absl names it (INVALID_ARGUMENT, NOT_FOUND, ...).
std::string ErrorLine(const absl::Status& status);

}  // namespace kvc::cli

#endif  // KVC_CLIENT_CPP_CLI_CLI_CONTEXT_H_
