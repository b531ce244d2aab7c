// ServerProcess: a real kvc-server binary run as a child process for end-to-end tests. Start launches it
// with the given flags and environment on a free port (--listen 127.0.0.1:0 --log-format json unless the
// flags say otherwise), reads the bound gRPC and metrics ports from its JSON "listening" log line, and
// waits until gRPC health for "" is SERVING. Stop sends SIGTERM and returns the exit code; the destructor
// kills a server that is still running, so a failed test leaks no process. stdout and stderr go to a log
// file whose text (Log) belongs in failure messages.
//
// The child is also killed if the thread that started it dies (PR_SET_PDEATHSIG), so start servers from
// the test's main thread.
//
// Ownership: owns the child process, its log file and, when the options ask for them, a temporary store
// directory and a pause-point directory (removed by the destructor).
// Thread safety: Start, Stop and the destructor belong to one thread; the const accessors, Log, RssBytes
// and NewChannel may be called from any thread.
#ifndef KVC_TESTS_SUPPORT_SERVER_PROCESS_H_
#define KVC_TESTS_SUPPORT_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/pause_points.h"

namespace kvc::testing {

struct ServerProcessOptions {
  // The kvc-server binary; empty: $KVC_SERVER_BIN (set by the tests' CMake block).
  std::string binary;
  // Flags after the binary name. --listen and --log-format are added (127.0.0.1:0, json) when absent;
  // --store file://<a fresh temporary directory> is added when absent.
  std::vector<std::string> args;
  // Variables added to (or replacing in) the test's own environment.
  std::vector<std::pair<std::string, std::string>> env;
  // How long to wait for the "listening" line and then for health "" to be SERVING.
  absl::Duration start_timeout = absl::Seconds(90);
  // Wait for SERVING (the model loaded). False: Start returns once the port is known.
  bool wait_serving = true;
  // Bearer token for the health probe, when the server requires one.
  std::string auth_token;
  // Start with the test pause points on (--test-pause-dir <a fresh temporary directory>); pause() drives them.
  bool pause_points = false;
};

class ServerProcess {
 public:
  // Errors: NOT_FOUND without a binary; INTERNAL when fork fails; UNAVAILABLE when the process exits
  // before serving; DEADLINE_EXCEEDED when it does not serve in time. Every error message ends with the
  // server's log.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(ServerProcessOptions options);
  ~ServerProcess();

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }  // 0 when the server runs without metrics
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The temporary store directory Start created, or empty when the flags named a store.
  const std::string& store_dir() const { return store_dir_; }
  // The server's pause points (service/pause_points.h); only meaningful with options.pause_points.
  const PauseControl& pause() const { return pause_; }

  // A fresh insecure channel to the server (each call a separate connection), with message limits large
  // enough for the server's own limits.
  std::shared_ptr<grpc::Channel> NewChannel() const;

  // Polls gRPC health for `service` until it reports SERVING. UNAVAILABLE when the process exits first
  // (e.g. its model does not load), DEADLINE_EXCEEDED after `timeout`.
  absl::Status WaitServing(const std::string& service, absl::Duration timeout) const;

  // SIGTERM, then waits up to `timeout` for the exit. Returns the exit code (128 + signal when a signal
  // ended it); DEADLINE_EXCEEDED after killing a server that did not exit in time.
  absl::StatusOr<int> Stop(absl::Duration timeout = absl::Seconds(60));

  // Whether the process has not exited yet (reaps it when it has).
  bool Running();

  // The server's stdout and stderr so far.
  std::string Log() const;
  // Resident set size of the server process (VmRSS of /proc/<pid>/status), in bytes; -1 when unreadable.
  int64_t RssBytes() const;

 private:
  ServerProcess() = default;
  absl::Status Launch(const ServerProcessOptions& options);
  absl::Status WaitListening(absl::Time deadline);
  void Kill();

  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string log_path_;
  std::string store_dir_;
  std::string pause_dir_;
  PauseControl pause_{""};
  std::string auth_token_;
};

// Runs `http://127.0.0.1:<port><path>` as a plain HTTP/1.0 GET and returns the body (non-200: UNAVAILABLE).
absl::StatusOr<std::string> HttpGet(int port, const std::string& path, absl::Duration timeout = absl::Seconds(10));

// The value of the Prometheus sample `name{labels}` in an exposition text, where `labels` are the
// `key="value"` pairs the sample must carry (others may be present). 0 when the text has no such sample;
// the sum when several match.
double MetricValue(const std::string& exposition, const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& labels);

// A fresh temporary directory under $TMPDIR (or /tmp); the caller removes it.
std::string MakeTempDir(const std::string& prefix);

}  // namespace kvc::testing

#endif  // KVC_TESTS_SUPPORT_SERVER_PROCESS_H_
