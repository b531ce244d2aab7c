// kvc-server: parses the configuration, starts the server, loads the model in the background, and on
// SIGTERM or SIGINT drains in-flight calls (up to --drain-seconds) and exits 0. Exits 1 when the server
// cannot start or the model cannot be loaded, and 2 for a bad flag. With --check-config it only checks the
// configuration (config_check.h) and exits 0 or 2.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "service/config_check.h"
#include "service/kvc_server.h"
#include "service/logging.h"
#include "service/server_config.h"

extern char** environ;

namespace {

// Signals are taken by sigwait on the main thread, so they must be blocked before any thread starts (every
// thread inherits the mask); otherwise one of gRPC's threads would receive them and die.
sigset_t BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);  // the model loader's failure, raised at this process
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<kvc::ParsedServerConfig> parsed = kvc::ParseServerConfig(argc, argv);
  if (!parsed.ok()) {
    std::cerr << "kvc-server: " << parsed.status().message() << "\nTry 'kvc-server --help'.\n";
    return 2;
  }
  if (parsed->help) {
    std::cout << parsed->text;
    return 0;
  }
  if (parsed->check_config) {
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) environment.emplace_back(*e);
    absl::StatusOr<std::string> settings = kvc::CheckServerConfig(*parsed, environment);
    if (!settings.ok()) {
      std::cerr << "kvc-server: configuration error: " << settings.status().message() << "\n";
      return 2;
    }
    std::cout << "kvc-server: configuration ok\n" << *settings;
    return 0;
  }
  const sigset_t signals = BlockShutdownSignals();
  auto log = kvc::Log::Create(parsed->config.log_format);
  if (!log.ok()) {
    std::cerr << "kvc-server: " << log.status().message() << "\n";
    return 2;
  }
  auto server = kvc::KvcServer::Start(parsed->config, log->get());
  if (!server.ok()) {
    (*log)->Error("cannot start", {{"error", server.status().ToString()}});
    return 1;
  }
  absl::Status load_status;
  std::thread loader([&] {
    load_status = (*server)->LoadModel();
    if (!load_status.ok()) kill(getpid(), SIGUSR1);
  });
  int signal = 0;
  sigwait(&signals, &signal);
  const bool load_failed = signal == SIGUSR1;
  if (!load_failed) (*log)->Info("signal", {{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"}});
  // Calls still running at the end of the drain time are cancelled; either way the stop is orderly.
  (*server)->Shutdown();
  loader.join();
  server->reset();
  return load_failed ? 1 : 0;
}
