#include "service/store/redis_server_for_test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "compressor/util/status_macros.h"

namespace kvc::store_testing {
namespace {

absl::StatusOr<std::string> FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      name, " is not on PATH; the redis tests need it (scripts/setup.sh installs the redis-server package)"));
}

// A port the kernel just handed out, released again for the server to bind. Another process could take
// it in between; Start retries on a bind failure.
absl::StatusOr<int> FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot find a free port: ", std::strerror(err)));
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

std::string ReadTail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisServerForTest>> RedisServerForTest::Start(
    const std::string& dir, std::vector<std::string> extra_args) {
  KVC_ASSIGN_OR_RETURN(std::string binary, FindOnPath("redis-server"));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    KVC_ASSIGN_OR_RETURN(int port, FreeLoopbackPort());
    std::unique_ptr<RedisServerForTest> server(new RedisServerForTest(binary, dir, extra_args, port));
    last = server->Launch();
    if (last.ok()) return server;
  }
  return last;
}

RedisServerForTest::~RedisServerForTest() { Kill().IgnoreError(); }

std::string RedisServerForTest::Uri(int db) const {
  return absl::StrCat("redis://127.0.0.1:", port_, "/", db);
}

absl::Status RedisServerForTest::Launch() {
  std::vector<std::string> args = {binary_,  "--port",    absl::StrCat(port_), "--bind",      "127.0.0.1",
                                   "--save", "",          "--appendonly",      "no",          "--dir",
                                   dir_,     "--logfile", dir_ + "/redis.log", "--daemonize", "no"};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;

  absl::Time deadline = absl::Now() + absl::Seconds(15);
  std::string last_error = "no answer";
  while (absl::Now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat("redis-server on port ", port_, " exited at startup; log:\n",
                                                 ReadTail(dir_ + "/redis.log")));
    }
    auto pong = Command({"PING"});
    if (pong.ok() && !pong->empty() && (*pong)[0] == "PONG") return absl::OkStatus();
    // A server with requirepass answers, but only to say so.
    if (!pong.ok() && absl::StartsWith(pong.status().message(), "NOAUTH")) return absl::OkStatus();
    if (!pong.ok()) last_error = std::string(pong.status().message());
    absl::SleepFor(absl::Milliseconds(20));
  }
  Kill().IgnoreError();
  return absl::UnavailableError(
      absl::StrCat("redis-server on port ", port_, " did not answer PING: ", last_error));
}

absl::Status RedisServerForTest::Signal(int signal) {
  if (pid_ <= 0) return absl::FailedPreconditionError("redis-server is not running");
  if (::kill(pid_, signal) != 0) return absl::InternalError(absl::StrCat("kill: ", std::strerror(errno)));
  if (signal == SIGKILL) {
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  return absl::OkStatus();
}

absl::Status RedisServerForTest::Kill() {
  if (pid_ <= 0) return absl::OkStatus();
  return Signal(SIGKILL);
}

absl::Status RedisServerForTest::Restart() {
  KVC_RETURN_IF_ERROR(Kill());
  return Launch();
}

absl::StatusOr<std::vector<std::string>> RedisServerForTest::Command(const std::vector<std::string>& args,
                                                                     int db) const {
  struct timeval tv = {2, 0};
  redisContext* ctx = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (ctx == nullptr || ctx->err) {
    std::string msg = ctx ? ctx->errstr : "out of memory";
    if (ctx) redisFree(ctx);
    return absl::UnavailableError(absl::StrCat("127.0.0.1:", port_, ": ", msg));
  }
  redisSetTimeout(ctx, tv);
  auto run = [ctx](const std::vector<std::string>& a) -> absl::StatusOr<std::vector<std::string>> {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& s : a) {
      argv.push_back(s.data());
      lens.push_back(s.size());
    }
    auto* r =
        static_cast<redisReply*>(redisCommandArgv(ctx, static_cast<int>(a.size()), argv.data(), lens.data()));
    if (r == nullptr) return absl::UnavailableError(ctx->errstr);
    std::vector<std::string> out;
    absl::Status status;
    switch (r->type) {
      case REDIS_REPLY_ERROR:
        status = absl::InternalError(std::string(r->str, r->len));
        break;
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
        out.emplace_back(r->str, r->len);
        break;
      case REDIS_REPLY_INTEGER:
        out.push_back(absl::StrCat(r->integer));
        break;
      case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < r->elements; ++i) {
          if (r->element[i]->type == REDIS_REPLY_STRING)
            out.emplace_back(r->element[i]->str, r->element[i]->len);
        }
        break;
      default:
        break;
    }
    freeReplyObject(r);
    if (!status.ok()) return status;
    return out;
  };
  absl::StatusOr<std::vector<std::string>> result = std::vector<std::string>();
  if (db != 0) result = run({"SELECT", absl::StrCat(db)});
  if (result.ok()) result = run(args);
  redisFree(ctx);
  return result;
}

}  // namespace kvc::store_testing
