// A throwaway redis-server child process on a free loopback port, for tests.
//
// Ownership: the object owns the child; destroying it kills the child (SIGKILL) and reaps it. The child
// also dies with the thread that started it (PR_SET_PDEATHSIG), so a crashed test leaves no server behind.
// Thread safety: none; drive it from the test's main thread. Client() connections are independent.
#ifndef KVC_SERVICE_STORE_REDIS_SERVER_FOR_TEST_H_
#define KVC_SERVICE_STORE_REDIS_SERVER_FOR_TEST_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvc::store_testing {

class RedisServerForTest {
 public:
  // Starts `redis-server` from PATH with its data and log in `dir` (created if missing), no RDB
  // snapshots, and `extra_args` (for instance {"--appendonly", "yes"}) after the defaults. Returns once
  // the server answers PING. FAILED_PRECONDITION if redis-server is not on PATH.
  static absl::StatusOr<std::unique_ptr<RedisServerForTest>> Start(const std::string& dir,
                                                                   std::vector<std::string> extra_args = {});
  ~RedisServerForTest();
  RedisServerForTest(const RedisServerForTest&) = delete;
  RedisServerForTest& operator=(const RedisServerForTest&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // "redis://127.0.0.1:<port>/<db>"
  std::string Uri(int db = 0) const;

  // Sends `signal` to the server (SIGSTOP, SIGCONT...). SIGKILL also reaps it.
  absl::Status Signal(int signal);
  // SIGKILL and reap; then start again on the same port with the same arguments (so an append-only file
  // in `dir` is reloaded).
  absl::Status Kill();
  absl::Status Restart();

  // Runs one command on a fresh connection and returns the reply's strings: a bulk or status reply as one
  // element, an array's string elements in order, an integer as its decimal text; an error reply is an
  // error status.
  absl::StatusOr<std::vector<std::string>> Command(const std::vector<std::string>& args, int db = 0) const;

 private:
  RedisServerForTest(std::string binary, std::string dir, std::vector<std::string> extra_args, int port)
      : binary_(std::move(binary)), dir_(std::move(dir)), extra_args_(std::move(extra_args)), port_(port) {}
  absl::Status Launch();

  const std::string binary_;
  const std::string dir_;
  const std::vector<std::string> extra_args_;
  const int port_;
  pid_t pid_ = -1;
};

}  // namespace kvc::store_testing

#endif  // KVC_SERVICE_STORE_REDIS_SERVER_FOR_TEST_H_
