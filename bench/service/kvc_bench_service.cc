// kvc-bench-service: the gRPC service's own costs, measured against a real kvc-server.
//
//   1. overhead: Compress with method "none" on a tiny model, as a round trip over loopback and as the same
//      work done in this process with no gRPC (InProcessCompressor), p50 and p99 (target: <= 1 ms at p50);
//   2. load: N concurrent clients (default 64) for a fixed time (default 60 s) of mixed traffic: throughput
//      and latency per RPC and the error counts by status code.
//
// It starts the kvc-server binary itself for each part (--listen 127.0.0.1:0 --log-format json, the port read
// from the "listening" log line, a temporary file store) or connects to --server. The overhead part runs
// LibTorch with one thread in both processes by default (--overhead-threads): two processes that each run an
// OpenMP team on the same cores slow each other down by spin-waiting, which would show up as gRPC overhead.
// The report is Markdown on stdout (and in --out), with the command, the date, the CPU and how busy the
// machine was during each part. Results: bench/results/service-cpu.md.
//
//   kvc-bench-service                                   # both parts, server and model from the build tree
//   kvc-bench-service --mode overhead --iterations 2000
//   kvc-bench-service --mode load --clients 64 --duration 60 --server-arg=--max-queue-tokens=2048
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/service/in_process_compressor.h"
#include "bench/service/machine_load.h"
#include "bench/service/mixed_load_bench.h"
#include "bench/service/overhead_bench.h"
#include "proto/kvc/v1/cache.grpc.pb.h"
#include "proto/kvc/v1/compressor.grpc.pb.h"
#include "tests/support/server_process.h"

namespace {

// The directory of this executable: <build>/bin, where kvc-server is built too.
std::filesystem::path ExecutableDir() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path("build/bin") : self.parent_path();
}

// One connection per channel, as separate clients would have, with no message size limit on our side.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

int Fail(const std::string& what, const absl::Status& status) {
  std::cerr << "kvc-bench-service: " << what << ": " << status << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvc-server benchmark: gRPC overhead of Compress, and mixed traffic from concurrent clients"};
  const std::filesystem::path bin_dir = ExecutableDir();
  std::string server_bin = (bin_dir / "kvc-server").string();
  std::string server_address;
  std::string model = (bin_dir.parent_path() / "testdata" / "tiny_chat").string();
  std::vector<std::string> server_args;
  std::string mode = "all", out_path, weights_text;
  int threads = 0, overhead_threads = 1;
  double deadline_s = 30;
  kvc::bench::OverheadOptions overhead;
  kvc::bench::MixedLoadOptions load;
  double duration_s = 60;
  app.add_option("--server-bin", server_bin, "kvc-server binary to start (default: next to this binary)")
      ->capture_default_str();
  app.add_option("--server", server_address,
                 "HOST:PORT of a running kvc-server to use instead of starting one (it must serve --model for "
                 "the overhead part, and every role)");
  app.add_option("--model", model, "model served by the started server and loaded for the in-process path")
      ->capture_default_str();
  app.add_option("--server-arg", server_args, "extra flag for the started server (repeatable), e.g. "
                                              "--server-arg=--max-queue-tokens=2048");
  app.add_option("--threads", threads, "load: CPU intra-op threads of the server (0: LibTorch's default)")
      ->capture_default_str();
  app.add_option("--overhead-threads", overhead_threads,
                 "overhead: CPU intra-op threads of the server and of the in-process path. Two processes that "
                 "each run an OpenMP team on the same cores slow each other down by spin-waiting, which would "
                 "be counted as gRPC overhead; one thread each keeps the compute of both paths the same")
      ->capture_default_str();
  app.add_option("--mode", mode, "overhead, load or all")->check(CLI::IsMember({"overhead", "load", "all"}))
      ->capture_default_str();
  app.add_option("--iterations", overhead.iterations, "overhead: timed calls per path")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", overhead.warmup, "overhead: untimed calls per path first")->capture_default_str();
  app.add_option("--overhead-words", overhead.document_words, "overhead: words in the document")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--model-info-calls", overhead.model_info_calls, "overhead: GetModelInfo round trips")
      ->capture_default_str();
  app.add_option("--clients", load.clients, "load: concurrent clients")->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--duration", duration_s, "load: seconds of traffic")->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--deadline", deadline_s, "load: each call's deadline in seconds")->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--load-words", load.document_words, "load: words per Compress document")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--hit-pool", load.hit_pool, "load: distinct Compress requests answered from the store")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--generate-tokens", load.generate_tokens, "load: max_tokens of each Generate")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--weights", weights_text,
                 "load: seven relative weights: compress-hit,compress-miss,generate,stat,get,list,model-info "
                 "(default 35,5,15,10,10,10,15)");
  app.add_option("--out", out_path, "also write the report to this file");
  CLI11_PARSE(app, argc, argv);
  load.duration = absl::Seconds(duration_s);
  load.timeout = absl::Seconds(deadline_s);
  if (!weights_text.empty()) {
    std::vector<std::string> parts = absl::StrSplit(weights_text, ',');
    if (parts.size() != kvc::bench::kRpcKinds) {
      return Fail("--weights", absl::InvalidArgumentError("expected seven comma-separated integers"));
    }
    for (int k = 0; k < kvc::bench::kRpcKinds; ++k) {
      if (!absl::SimpleAtoi(parts[k], &load.weights[k]) || load.weights[k] < 0) {
        return Fail("--weights", absl::InvalidArgumentError(absl::StrCat("'", parts[k], "' is not an integer >= 0")));
      }
    }
  }
  const bool run_overhead = mode != "load", run_load = mode != "overhead";

  std::vector<std::string> command(argv, argv + argc);
  std::string report = absl::StrCat(
      "## kvc-bench-service\n\n- command: `", absl::StrJoin(command, " "), "`\n- date: ",
      absl::FormatTime("%Y-%m-%d %H:%M:%S %z", absl::Now(), absl::LocalTimeZone()), "\n- machine: ",
      kvc::bench::OnlineCpus(), " CPUs, ", kvc::bench::CpuModel(), "; load average at start ",
      kvc::bench::LoadAverage(), "\n- model: ", model, "\n");

  // A server per part, so that each gets its own thread setting and an empty store; started from the main
  // thread (its parent-death signal follows the starting thread).
  const bool external = !server_address.empty();
  if (external) {
    absl::StrAppend(&report, "- server: ", server_address, " (running already; its CPU time counts as other "
                             "processes')\n");
  }
  std::cout << report << std::flush;
  struct Server {
    std::unique_ptr<kvc::testing::ServerProcess> process;
    std::string address;
    std::vector<pid_t> watched = {0};  // this process, and the server when it is ours
  };
  auto start_server = [&](int server_threads, std::string* note) -> absl::StatusOr<Server> {
    Server s;
    if (external) {
      s.address = server_address;
      return s;
    }
    kvc::testing::ServerProcessOptions o;
    o.binary = server_bin;
    o.args = {"--model", model, "--metrics-listen", ""};
    if (server_threads > 0) o.args.insert(o.args.end(), {"--threads", std::to_string(server_threads)});
    o.args.insert(o.args.end(), server_args.begin(), server_args.end());
    o.start_timeout = absl::Seconds(180);
    absl::StatusOr<std::unique_ptr<kvc::testing::ServerProcess>> started = kvc::testing::ServerProcess::Start(o);
    if (!started.ok()) return started.status();
    s.process = *std::move(started);
    s.address = s.process->address();
    s.watched.push_back(s.process->pid());
    std::vector<std::string> shown;
    for (const std::string& a : o.args) shown.push_back(a.empty() ? "''" : a);
    *note = absl::StrCat("- server: `", server_bin, " --listen 127.0.0.1:0 --log-format json ",
                         absl::StrJoin(shown, " "), "`, a temporary file store\n");
    return s;
  };
  auto stop_server = [](Server& s) -> absl::Status {
    if (s.process == nullptr) return absl::OkStatus();
    absl::StatusOr<int> code = s.process->Stop();
    if (!code.ok()) return code.status();
    if (*code != 0) {
      return absl::InternalError(absl::StrCat("kvc-server exited with code ", *code, "\n", s.process->Log()));
    }
    return absl::OkStatus();
  };

  if (run_overhead) {
    const std::string store_dir = kvc::testing::MakeTempDir("kvc-bench-inprocess-");
    if (store_dir.empty()) return Fail("in-process store", absl::InternalError("mkdtemp failed"));
    std::string note;
    absl::StatusOr<Server> server = start_server(overhead_threads, &note);
    if (!server.ok()) return Fail("starting kvc-server", server.status());
    kvc::bench::InProcessCompressorOptions o;
    o.model.path = model;
    o.model.num_threads = overhead_threads;
    o.store_uri = "file://" + store_dir;
    absl::StatusOr<std::unique_ptr<kvc::bench::InProcessCompressor>> local =
        kvc::bench::InProcessCompressor::Create(o);
    if (!local.ok()) return Fail("in-process compressor", local.status());
    std::shared_ptr<grpc::Channel> channel = MakeChannel(server->address);
    auto compressor = kvc::v1::Compressor::NewStub(channel);
    auto cache = kvc::v1::CacheService::NewStub(channel);
    const kvc::bench::CpuSnapshot before = kvc::bench::TakeCpuSnapshot(server->watched);
    absl::StatusOr<kvc::bench::OverheadResult> result = kvc::bench::RunOverhead(*compressor, *cache, **local, overhead);
    const kvc::bench::CpuSnapshot after = kvc::bench::TakeCpuSnapshot(server->watched);
    local->reset();
    std::error_code ec;
    std::filesystem::remove_all(store_dir, ec);
    if (!result.ok()) return Fail("overhead", result.status());
    if (absl::Status st = stop_server(*server); !st.ok()) return Fail("stopping kvc-server", st);
    std::string part = absl::StrCat("\n", kvc::bench::FormatOverhead(*result, overhead), note,
                                    absl::StrFormat("- LibTorch intra-op threads: %d in the server and in-process "
                                                    "(0: LibTorch's default)\n", overhead_threads),
                                    "- during this part: ", kvc::bench::DescribeCpuUse(before, after), "\n");
    std::cout << part << std::flush;
    report += part;
  }

  if (run_load) {
    std::string note;
    absl::StatusOr<Server> server = start_server(threads, &note);
    if (!server.ok()) return Fail("starting kvc-server", server.status());
    const int64_t rss_before = server->process ? server->process->RssBytes() : -1;
    const kvc::bench::CpuSnapshot before = kvc::bench::TakeCpuSnapshot(server->watched);
    const std::string address = server->address;
    absl::StatusOr<kvc::bench::MixedLoadResult> result =
        kvc::bench::RunMixedLoad([&] { return MakeChannel(address); }, load);
    const kvc::bench::CpuSnapshot after = kvc::bench::TakeCpuSnapshot(server->watched);
    if (!result.ok()) return Fail("load", result.status());
    const int64_t rss_after = server->process ? server->process->RssBytes() : -1;
    if (absl::Status st = stop_server(*server); !st.ok()) return Fail("stopping kvc-server", st);
    std::string part = absl::StrCat("\n", kvc::bench::FormatMixedLoad(*result, load), "\n", note,
                                    "- during this part: ", kvc::bench::DescribeCpuUse(before, after), "\n");
    if (rss_before >= 0) {
      absl::StrAppend(&part, "- server resident memory: ", rss_before >> 20, " MiB before the load, ",
                      rss_after >> 20, " MiB after\n");
    }
    std::cout << part << std::flush;
    report += part;
  }

  if (!out_path.empty()) {
    std::ofstream out(out_path);
    out << report;
    if (!out) return Fail("--out", absl::InternalError(absl::StrCat("cannot write ", out_path)));
  }
  return 0;
}
