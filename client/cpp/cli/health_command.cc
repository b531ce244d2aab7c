// `kvc health`: grpc.health.v1 status of the server and of each role's service.
#include <algorithm>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/time/clock.h"
#include "client/cpp/cli/commands.h"
#include "client/cpp/cli/request_flags.h"

namespace kvc::cli {
namespace {

struct Probe {
  std::string role;
  std::string service;
};

// The services a kvc-server registers with the health service: one per role it plays, and "" for the
// whole process.
const std::vector<Probe>& AllProbes() {
  static const auto* probes = new std::vector<Probe>{{"overall", ""},
                                                     {"compress", "kvc.v1.Compressor"},
                                                     {"cache", "kvc.v1.CacheService"},
                                                     {"generate", "kvc.v1.Generator"}};
  return *probes;
}

Probe ProbeFor(const std::string& name) {
  for (const Probe& p : AllProbes()) {
    if (name == p.role || name == p.service) return p;
  }
  return Probe{name, name};
}

struct ProbeResult {
  Probe probe;
  std::string status;  // SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN, or NOT_SERVED (NOT_FOUND)
};

}  // namespace

void AddHealthCommand(CLI::App& root, CliContext& ctx, CommandTable& table) {
  struct Flags {
    std::vector<std::string> services;
    double wait_seconds = 0;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = root.add_subcommand("health", "Check the server's health, overall and per role");
  sub->add_option("-s,--service", flags->services,
                  "Check only this, repeatable: a role (overall, compress, cache, generate) or a service name")
      ->type_name("NAME");
  sub->add_option("--wait", flags->wait_seconds,
                  "Poll every 0.5 s until healthy, for at most this many seconds (e.g. after starting a server)")
      ->type_name("SECONDS")
      ->check(Quiet(CLI::NonNegativeNumber));
  sub->footer(
      "Asks grpc.health.v1.Health for the whole server (\"\") and for each role's service, one line each:\n"
      "  overall: SERVING\n"
      "  compress (kvc.v1.Compressor): SERVING\n"
      "  cache (kvc.v1.CacheService): SERVING\n"
      "  generate (kvc.v1.Generator): NOT_SERVED\n"
      "NOT_SERVING: the role is loading its model or draining. NOT_SERVED: this server does not play the\n"
      "role. Exit status 0 when every checked service is SERVING, except roles reported NOT_SERVED when\n"
      "no --service was given; 1 otherwise or when the server cannot be reached."
      "\n\n"
      "Examples:\n"
      "  kvc health\n"
      "  kvc health --service compress --wait 120   # wait for the model to load");

  table.Add(sub, [&ctx, flags]() -> int {
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    std::vector<Probe> probes;
    if (flags->services.empty()) {
      probes = AllProbes();
    } else {
      for (const std::string& name : flags->services) probes.push_back(ProbeFor(name));
    }
    const bool explicit_services = !flags->services.empty();
    const absl::Time give_up = absl::Now() + absl::Seconds(flags->wait_seconds);
    CallOptions call;
    if (flags->wait_seconds > 0) call.timeout = absl::Seconds(std::min(flags->wait_seconds, 5.0));

    std::vector<ProbeResult> results;
    absl::Status rpc_error;
    bool healthy = false;
    while (true) {
      results.clear();
      rpc_error = absl::OkStatus();
      healthy = true;
      for (const Probe& probe : probes) {
        absl::StatusOr<ServingStatus> status = (*client)->Health(probe.service, call);
        std::string name;
        if (status.ok()) {
          name = ServingStatusName(*status);
          if (*status != ServingStatus::kServing) healthy = false;
        } else if (status.status().code() == absl::StatusCode::kNotFound) {
          name = "NOT_SERVED";
          if (explicit_services) healthy = false;
        } else {
          rpc_error = status.status();
          healthy = false;
          break;
        }
        results.push_back({probe, name});
      }
      if (healthy || absl::Now() + absl::Milliseconds(500) > give_up) break;
      absl::SleepFor(absl::Milliseconds(500));
    }
    if (!rpc_error.ok()) return ctx.Fail(rpc_error);

    if (ctx.json()) {
      nlohmann::json services = nlohmann::json::array();
      for (const ProbeResult& r : results) {
        services.push_back({{"role", r.probe.role}, {"service", r.probe.service}, {"status", r.status}});
      }
      ctx.out() << nlohmann::json{{"healthy", healthy}, {"services", services}}.dump() << std::endl;
    } else {
      for (const ProbeResult& r : results) {
        if (r.probe.role == "overall" && r.probe.service.empty()) {
          ctx.out() << "overall: " << r.status << "\n";
        } else if (r.probe.role == r.probe.service) {
          ctx.out() << r.probe.service << ": " << r.status << "\n";
        } else {
          ctx.out() << r.probe.role << " (" << r.probe.service << "): " << r.status << "\n";
        }
      }
      ctx.out().flush();
    }
    return healthy ? kExitOk : kExitError;
  });
}

}  // namespace kvc::cli
