#include "tests/support/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"

extern char** environ;

namespace kvc::testing {
namespace {

bool HasFlag(const std::vector<std::string>& args, const std::string& flag) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& a) {
    return a == flag || absl::StartsWith(a, flag + "=");
  });
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string MakeTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/", prefix, "XXXXXX");
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) return "";
  return std::string(buf.data());
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(ServerProcessOptions options) {
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  p->auth_token_ = options.auth_token;
  const absl::Time deadline = absl::Now() + options.start_timeout;
  absl::Status s = p->Launch(options);
  if (s.ok()) s = p->WaitListening(deadline);
  if (s.ok() && options.wait_serving) s = p->WaitServing("", deadline - absl::Now());
  if (!s.ok()) {
    const std::string log = p->Log();
    p->Kill();
    return absl::Status(s.code(), absl::StrCat(s.message(), "\n--- kvc-server log ---\n", log));
  }
  return p;
}

absl::Status ServerProcess::Launch(const ServerProcessOptions& options) {
  std::string binary = options.binary;
  if (binary.empty()) {
    const char* env = std::getenv("KVC_SERVER_BIN");
    if (env != nullptr) binary = env;
  }
  if (binary.empty() || access(binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("kvc-server binary '", binary, "' (set KVC_SERVER_BIN)"));
  }
  std::vector<std::string> args = {binary};
  args.insert(args.end(), options.args.begin(), options.args.end());
  if (!HasFlag(options.args, "--listen")) args.insert(args.end(), {"--listen", "127.0.0.1:0"});
  if (!HasFlag(options.args, "--log-format")) args.insert(args.end(), {"--log-format", "json"});
  if (!HasFlag(options.args, "--store")) {
    store_dir_ = MakeTempDir("kvc-e2e-store-");
    if (store_dir_.empty()) return absl::InternalError("mkdtemp for the store failed");
    args.insert(args.end(), {"--store", "file://" + store_dir_});
  }
  if (options.pause_points) {
    pause_dir_ = MakeTempDir("kvc-e2e-pause-");
    if (pause_dir_.empty()) return absl::InternalError("mkdtemp for the pause points failed");
    pause_ = PauseControl(pause_dir_);
    args.insert(args.end(), {"--test-pause-dir", pause_dir_});
  }
  const std::string log_dir = MakeTempDir("kvc-e2e-log-");
  if (log_dir.empty()) return absl::InternalError("mkdtemp for the log failed");
  log_path_ = log_dir + "/kvc-server.log";

  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    const bool replaced = std::any_of(options.env.begin(), options.env.end(),
                                      [&](const auto& kv) { return kv.first == name; });
    if (!replaced) env.push_back(entry);
  }
  for (const auto& [k, v] : options.env) env.push_back(k + "=" + v);

  // Everything the child needs is prepared here: after fork only async-signal-safe calls are allowed.
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return absl::InternalError(absl::StrCat("open ", log_path_, ": ", std::strerror(errno)));
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died between fork and prctl
    // The test process may block signals on its threads; the server sets its own mask.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(log_fd);
  pid_ = pid;
  return absl::OkStatus();
}

absl::Status ServerProcess::WaitListening(absl::Time deadline) {
  while (absl::Now() < deadline) {
    for (absl::string_view line : absl::StrSplit(Log(), '\n')) {
      if (!absl::StrContains(line, "\"listening\"")) continue;
      nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object() || j.value("msg", "") != "listening") continue;
      port_ = j.value("port", 0);
      metrics_port_ = j.value("metrics_port", 0);
      if (port_ <= 0) return absl::InternalError(absl::StrCat("the listening line has no port: ", line));
      return absl::OkStatus();
    }
    if (!Running()) {
      return absl::UnavailableError(absl::StrCat("kvc-server exited with code ", exit_code_, " before listening"));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError("kvc-server wrote no \"listening\" log line in time");
}

std::shared_ptr<grpc::Channel> ServerProcess::NewChannel() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // A separate connection per channel: concurrency tests want real parallel clients.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), args);
}

absl::Status ServerProcess::WaitServing(const std::string& service, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  auto stub = grpc::health::v1::Health::NewStub(NewChannel());
  std::string last = "no answer";
  while (absl::Now() < deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (!auth_token_.empty()) ctx.AddMetadata("authorization", "Bearer " + auth_token_);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = stub->Check(&ctx, request, &response);
    if (status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = status.ok() ? absl::StrCat("status ", response.status())
                       : absl::StrCat("code ", status.error_code(), ": ", status.error_message());
    if (pid_ > 0) {
      // Exited (e.g. the model failed to load)? Peek without reaping, so that Running() still reports it.
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_) {
        return absl::UnavailableError(absl::StrCat("kvc-server exited before health \"", service,
                                                   "\" was SERVING (", last, ")"));
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("health \"", service, "\" is not SERVING (", last, ")"));
}

bool ServerProcess::Running() {
  if (pid_ <= 0 || exited_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  exited_ = true;
  if (r == pid_) exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return false;
}

absl::StatusOr<int> ServerProcess::Stop(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not started");
  if (!Running()) return exit_code_;
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (!Running()) return exit_code_;
    absl::SleepFor(absl::Milliseconds(10));
  }
  Kill();
  return absl::DeadlineExceededError(absl::StrCat("kvc-server did not exit within ", absl::FormatDuration(timeout),
                                                  " of SIGTERM; killed"));
}

void ServerProcess::Kill() {
  if (pid_ <= 0 || !Running()) return;
  kill(pid_, SIGKILL);
  int status = 0;
  if (waitpid(pid_, &status, 0) == pid_) exit_code_ = 128 + SIGKILL;
  exited_ = true;
}

ServerProcess::~ServerProcess() {
  Kill();
  std::error_code ec;
  if (!store_dir_.empty()) std::filesystem::remove_all(store_dir_, ec);
  if (!pause_dir_.empty()) std::filesystem::remove_all(pause_dir_, ec);
  if (!log_path_.empty()) std::filesystem::remove_all(std::filesystem::path(log_path_).parent_path(), ec);
}

std::string ServerProcess::Log() const { return log_path_.empty() ? "" : ReadFile(log_path_); }

int64_t ServerProcess::RssBytes() const {
  std::ifstream in(absl::StrCat("/proc/", pid_, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view v = line;
    if (!absl::ConsumePrefix(&v, "VmRSS:")) continue;
    v = absl::StripAsciiWhitespace(v);
    absl::ConsumeSuffix(&v, "kB");
    int64_t kb = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &kb)) return kb * 1024;
  }
  return -1;
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path, absl::Duration timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(absl::ToInt64Seconds(timeout));
  tv.tv_usec = static_cast<suseconds_t>(absl::ToInt64Microseconds(timeout) % 1000000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect 127.0.0.1:", port, ": ", std::strerror(errno)));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buf[16384];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return absl::UnavailableError("no HTTP response");
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (!absl::StrContains(status_line, " 200")) return absl::UnavailableError(status_line);
  return response.substr(body + 4);
}

double MetricValue(const std::string& exposition, const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& labels) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    if (!absl::StartsWith(line, name)) continue;
    absl::string_view rest = line.substr(name.size());
    if (rest.empty() || (rest[0] != '{' && rest[0] != ' ')) continue;  // a longer name
    absl::string_view label_text;
    if (rest[0] == '{') {
      const size_t close = rest.find('}');
      if (close == absl::string_view::npos) continue;
      label_text = rest.substr(1, close - 1);
      rest = rest.substr(close + 1);
    }
    bool match = true;
    for (const auto& [k, v] : labels) {
      const std::string pair = absl::StrCat(k, "=\"", v, "\"");
      match = match && (absl::StartsWith(label_text, pair) || absl::StrContains(label_text, "," + pair));
    }
    if (!match) continue;
    double value = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(rest), &value)) sum += value;
  }
  return sum;
}

}  // namespace kvc::testing
