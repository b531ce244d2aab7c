// End to end against the kvc-server binary: a cancel or a passed deadline in every phase of a Compress, a
// Precompute and a Generate reaches the client as CANCELLED or DEADLINE_EXCEEDED, the server counts the
// call once, under that code, and the store holds nothing of the stopped call (no cache, no temp file).
//
// Each row holds the call's work at the phase's pause point (service/pause_points.h), stops the call there,
// waits until the held work has seen the stop and only then lets it go on, so no row depends on how fast
// the machine or the loopback is. The queued phases first
// hold another call on the device (the scheduler has one worker). A deadline row needs the hold to come
// before its deadline; when a very slow machine misses that, the row runs again with a longer deadline.
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "service/pause_points.h"
#include "tests/support/call_in_flight.h"
#include "tests/support/kvc_test_client.h"
#include "tests/support/server_process.h"
#include "tests/support/testdata.h"

namespace kvc::testing {
namespace {

namespace pp = kvc::pause_point;
using grpc::StatusCode;

constexpr char kCompress[] = "Compressor.Compress";
constexpr char kPrecompute[] = "Compressor.Precompute";
constexpr char kGenerate[] = "Generator.Generate";
constexpr char kQuestion[] = "What is the capital of France?";

// A bound on waiting for the server, far past anything a working server needs; never a guess of speed.
constexpr absl::Duration kPatience = absl::Seconds(90);

enum class Stop { kCancel, kDeadline };

struct Phase {
  std::string name;
  std::string rpc;    // the kvc_requests_total rpc label of the stopped call
  std::string point;  // where its work is held
  int arrival = 1;    // which arrival at the point (earlier ones pass)
  bool queued = false;  // another call holds the device first, so that this one waits in the queue
};

class ServerStopPhasesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto server = ServerProcess::Start({.args = {"--model", TestData("tiny_chat"), "--metrics-listen", "127.0.0.1:0"},
                                        .pause_points = true});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    stubs_ = new KvcStubs(server_->NewChannel());
  }
  static void TearDownTestSuite() {
    delete stubs_;
    stubs_ = nullptr;
    if (server_ != nullptr) {
      absl::StatusOr<int> code = server_->Stop();
      EXPECT_TRUE(code.ok() && *code == 0) << server_->Log();
    }
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  void TearDown() override {
    if (HasFailure() && server_ != nullptr) {
      const std::string log = server_->Log();
      ADD_FAILURE() << "kvc-server log tail:\n" << log.substr(log.size() > 40000 ? log.size() - 40000 : 0);
    }
  }

  // --- requests; `seed` makes each one's documents unique, so that none is a cache hit ---

  static v1::CompressRequest CompressOf(int seed) {
    v1::CompressRequest r;
    r.add_documents()->set_text(FillerText(120, 1000 + seed));
    r.set_query(kQuestion);
    r.mutable_spec()->set_method("finch");
    r.mutable_spec()->set_ratio(2);
    (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "16";  // several chunks
    return r;
  }
  static v1::PrecomputeRequest PrecomputeOf(int seed) {
    v1::PrecomputeRequest r;
    r.add_documents()->set_text(FillerText(120, 5000 + seed));
    r.set_mode(v1::PRECOMPUTE_MODE_QUERY_AGNOSTIC);
    r.mutable_spec()->set_method("knorm");
    r.mutable_spec()->set_ratio(2);
    (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "16";
    return r;
  }
  static v1::GenerateRequest GenerateOf(const std::string& cache_id) {
    v1::GenerateRequest r;
    r.add_cache_ids(cache_id);
    r.set_query(kQuestion);
    r.mutable_sampling()->set_max_tokens(8);
    r.mutable_sampling()->set_stop_on_eos(false);  // eight decode steps, whatever the model says
    return r;
  }

  static std::unique_ptr<CallInFlight> Start(const std::string& rpc, int seed, const std::string& cache_id,
                                             std::chrono::milliseconds timeout) {
    KvcStubs* s = stubs_;
    if (rpc == kCompress) {
      return std::make_unique<CallInFlight>(timeout, [s, r = CompressOf(seed)](grpc::ClientContext* ctx) {
        v1::CompressResponse out;
        return s->compressor->Compress(ctx, r, &out);
      });
    }
    if (rpc == kPrecompute) {
      return std::make_unique<CallInFlight>(timeout, [s, r = PrecomputeOf(seed)](grpc::ClientContext* ctx) {
        v1::PrecomputeResponse out;
        return s->compressor->Precompute(ctx, r, &out);
      });
    }
    return std::make_unique<CallInFlight>(timeout, [s, r = GenerateOf(cache_id)](grpc::ClientContext* ctx) {
      GenerateResult g = Generate(*s->generator, ctx, r);
      // A stopped stream must not also have ended like a finished one.
      if (!g.status.ok() && g.usage_messages > 0) {
        return grpc::Status(StatusCode::INTERNAL, "test: a usage message before a non-OK status");
      }
      return g.status;
    });
  }

  // --- what the server says ---

  static std::string Metrics() {
    absl::StatusOr<std::string> text = HttpGet(server_->metrics_port(), "/metrics");
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : "";
  }
  static double Count(const std::string& metrics, const std::string& rpc, const std::string& code = "") {
    std::vector<std::pair<std::string, std::string>> labels = {{"rpc", rpc}};
    if (!code.empty()) labels.emplace_back("code", code);
    return MetricValue(metrics, "kvc_requests_total", labels);
  }
  // The store's files, by name: complete caches end in .kvc, writes in progress in .tmp.
  static std::multiset<std::string> StoreFiles() {
    std::multiset<std::string> files;
    for (const auto& e : std::filesystem::recursive_directory_iterator(server_->store_dir())) {
      if (e.is_regular_file() && e.path().filename() != ".lock") files.insert(e.path().filename().string());
    }
    return files;
  }

  // A small cache to generate from, made once.
  static const std::string& CacheId() {
    static const std::string* id = [] {
      v1::CompressRequest r;
      r.add_documents()->set_text("The capital of France is Paris. " + FillerText(40, 1));
      r.mutable_spec()->set_method("knorm");
      r.mutable_spec()->set_ratio(2);
      grpc::ClientContext ctx;
      Configure(ctx, {});
      v1::CompressResponse out;
      grpc::Status s = stubs_->compressor->Compress(&ctx, r, &out);
      EXPECT_TRUE(s.ok()) << s.error_message();
      return new std::string(out.cache_id());
    }();
    return *id;
  }

  enum class Outcome { kDone, kLate };

  // One row: stops a call of `phase.rpc` with `stop` while its work is held at `phase.point`, then checks
  // the client's code, the server's count and the store. kLate: the hold came after the deadline (a very
  // slow machine), so the row proved nothing and should run again with a longer timeout.
  Outcome RunRow(const Phase& phase, Stop stop, std::chrono::milliseconds timeout, int seed) {
    const PauseControl& pause = server_->pause();
    const std::string expected = stop == Stop::kCancel ? "CANCELLED" : "DEADLINE_EXCEEDED";
    const std::string& cache_id = CacheId();  // made before the counts are taken
    const std::string metrics_before = Metrics();
    const std::multiset<std::string> files_before = StoreFiles();
    const absl::Time until = absl::Now() + kPatience;

    // Queued phases: a call of the other role holds the device, at a point the stopped call never reaches
    // first, so that the two holds cannot be mixed up.
    std::unique_ptr<CallInFlight> holder;
    std::string holder_rpc, holder_point;
    if (phase.queued) {
      holder_rpc = phase.rpc == kGenerate ? kCompress : kGenerate;
      holder_point = holder_rpc == kCompress ? pp::kCompressPrefillChunk : pp::kGenerateDecodeStep;
      EXPECT_TRUE(pause.Arm(holder_point).ok());
      holder = Start(holder_rpc, seed + 500, cache_id, std::chrono::milliseconds(600000));
      absl::Status held = pause.WaitHeld(holder_point, until);
      EXPECT_TRUE(held.ok()) << held;
      if (!held.ok()) return Outcome::kDone;
    }

    const std::chrono::milliseconds call_timeout =
        stop == Stop::kDeadline ? timeout : std::chrono::milliseconds(600000);
    // Armed before the call starts, so that a fast call cannot pass the point first.
    EXPECT_TRUE(pause.Arm(phase.point).ok());
    std::unique_ptr<CallInFlight> call = Start(phase.rpc, seed, cache_id, call_timeout);
    // Past its deadline the work may stop before the point; the server then counts the call, which ends
    // the wait (checked at most every 20 ms).
    absl::Time next_look = absl::InfinitePast();
    const double total_before = Count(metrics_before, phase.rpc);
    auto ended_elsewhere = [&] {
      if (!call->done() || absl::Now() < next_look) return false;
      next_look = absl::Now() + absl::Milliseconds(20);
      return Count(Metrics(), phase.rpc) > total_before;
    };
    absl::Status held = pause.HoldAtArmed(phase.point, phase.arrival, until, ended_elsewhere);
    const bool in_time = held.ok() && absl::Now() < call->deadline();
    EXPECT_TRUE(held.ok() || absl::IsCancelled(held)) << held;

    if (stop == Stop::kCancel) call->Cancel();
    const grpc::Status status = call->Wait();  // a deadline row returns at its deadline
    if (held.ok()) {
      // The client's cancel travels to the server, and the server's copy of the deadline ends a transit
      // after the client's: the work goes on only once the server has seen the stop.
      absl::Status seen = pause.WaitStopSeen(phase.point, until);
      EXPECT_TRUE(seen.ok()) << phase.name << ": " << seen;
      EXPECT_TRUE(pause.Release(phase.point).ok());
    }
    pause.Disarm(phase.point);
    if (holder != nullptr) {
      EXPECT_TRUE(pause.Release(holder_point).ok());
      grpc::Status holder_status = holder->Wait();
      EXPECT_TRUE(holder_status.ok()) << phase.name << ": the holding call failed: " << holder_status.error_message();
    }

    // The server finishes the call once its work reaches the next check.
    const int holder_calls = holder_rpc == phase.rpc ? 1 : 0;
    std::string metrics_after = Metrics();
    while (Count(metrics_after, phase.rpc) < total_before + 1 + holder_calls && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(10));
      metrics_after = Metrics();
    }
    if (stop == Stop::kDeadline && !in_time) return Outcome::kLate;

    const std::string row = absl::StrCat(phase.name, " (", expected, ")");
    EXPECT_EQ(status.error_code(), stop == Stop::kCancel ? StatusCode::CANCELLED : StatusCode::DEADLINE_EXCEEDED)
        << row << ": " << status.error_message();
    // Counted once, under the stop's code; nothing else was counted for this rpc but the holder's success.
    EXPECT_EQ(Count(metrics_after, phase.rpc, expected) - Count(metrics_before, phase.rpc, expected), 1) << row;
    EXPECT_EQ(Count(metrics_after, phase.rpc) - total_before, 1 + holder_calls) << row;
    if (holder != nullptr) {
      EXPECT_EQ(Count(metrics_after, holder_rpc, "OK") - Count(metrics_before, holder_rpc, "OK"), 1) << row;
    }

    // Nothing of the stopped call in the store: the only new file is the holding compression's cache.
    const std::multiset<std::string> files_after = StoreFiles();
    int new_caches = 0;
    for (const std::string& f : files_after) {
      EXPECT_FALSE(absl::EndsWith(f, ".tmp")) << row << ": a partial write was left: " << f;
      if (files_before.count(f) == 0 && absl::EndsWith(f, ".kvc")) ++new_caches;
    }
    EXPECT_EQ(new_caches, holder_rpc == kCompress ? 1 : 0) << row;
    return Outcome::kDone;
  }

  void RunPhases(const std::vector<Phase>& phases) {
    int seed = 0;
    for (const Phase& phase : phases) {
      for (Stop stop : {Stop::kCancel, Stop::kDeadline}) {
        const absl::Time start = absl::Now();
        int tries = 0;
        // 1 s is plenty to reach any point here; a row that missed it proves nothing and runs again.
        for (int64_t ms : {1000, 4000, 16000, 64000}) {
          ++tries;
          if (RunRow(phase, stop, std::chrono::milliseconds(ms), ++seed) == Outcome::kDone) break;
          ASSERT_LT(ms, 64000) << phase.name << ": never held before a 64 s deadline";
        }
        std::printf("%-40s %-18s %6.2fs  %d %s\n", phase.name.c_str(),
                    stop == Stop::kCancel ? "CANCELLED" : "DEADLINE_EXCEEDED",
                    absl::ToDoubleSeconds(absl::Now() - start), tries, tries == 1 ? "try" : "tries");
        if (HasFatalFailure()) return;
      }
    }
  }

  static ServerProcess* server_;
  static KvcStubs* stubs_;
};

ServerProcess* ServerStopPhasesTest::server_ = nullptr;
KvcStubs* ServerStopPhasesTest::stubs_ = nullptr;

TEST_F(ServerStopPhasesTest, CompressStopsWithTheRightCodeInEveryPhase) {
  RunPhases({
      {"compress: tokenizing", kCompress, pp::kCompressTokenize},
      {"compress: queued", kCompress, pp::kCompressQueued, 1, /*queued=*/true},
      {"compress: first prefill chunk", kCompress, pp::kCompressPrefillChunk, 1},
      {"compress: third prefill chunk", kCompress, pp::kCompressPrefillChunk, 3},
      {"compress: selection done", kCompress, pp::kCompressCompressed},
      {"compress: serializing", kCompress, pp::kCompressSerialize},
      {"compress: storing", kCompress, pp::kCompressStore},
  });
}

TEST_F(ServerStopPhasesTest, PrecomputeStopsWithTheRightCodeInEveryPhase) {
  RunPhases({
      {"precompute: tokenizing", kPrecompute, pp::kCompressTokenize},
      {"precompute: queued", kPrecompute, pp::kCompressQueued, 1, /*queued=*/true},
      {"precompute: second prefill chunk", kPrecompute, pp::kCompressPrefillChunk, 2},
      {"precompute: serializing", kPrecompute, pp::kCompressSerialize},
      {"precompute: storing", kPrecompute, pp::kCompressStore},
  });
}

TEST_F(ServerStopPhasesTest, GenerateStopsWithTheRightCodeInEveryPhase) {
  RunPhases({
      {"generate: loading the cache", kGenerate, pp::kGenerateLoad},
      {"generate: tokenizing", kGenerate, pp::kGenerateTokenize},
      {"generate: queued", kGenerate, pp::kGenerateQueued, 1, /*queued=*/true},
      {"generate: before composing", kGenerate, pp::kGenerateDecodeStep, 1},
      {"generate: third decode step", kGenerate, pp::kGenerateDecodeStep, 3},
      {"generate: streaming, last token out", kGenerate, pp::kGenerateStream},
  });
}

// After all of it the server still serves, and a call that is not stopped passes every point.
TEST_F(ServerStopPhasesTest, ServerStillServesAfterwards) {
  v1::CompressRequest r = CompressOf(9999);
  grpc::ClientContext ctx;
  Configure(ctx, {});
  v1::CompressResponse out;
  grpc::Status s = stubs_->compressor->Compress(&ctx, r, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  GenerateResult g = Generate(*stubs_->generator, GenerateOf(out.cache_id()));
  EXPECT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.token_count, 8);
  EXPECT_EQ(g.usage_messages, 1);
}

}  // namespace
}  // namespace kvc::testing
