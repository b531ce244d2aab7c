// End to end: SIGTERM to the real kvc-server binary while a Generate and a Compress are in flight. Within
// the drain time the calls complete and the process exits 0; past it the calls are cancelled and the
// process still exits 0. Either way nothing listens on the port afterwards.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/support/kvc_test_client.h"
#include "tests/support/server_process.h"
#include "tests/support/testdata.h"

namespace kvc::testing {
namespace {

bool PortAcceptsConnections(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return connected;
}

v1::GenerateRequest LongGenerate(const std::string& cache_id, int max_tokens) {
  v1::GenerateRequest r;
  r.add_cache_ids(cache_id);
  r.set_query("What is the capital of France?");
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_stop_on_eos(false);
  return r;
}

// Well under a second of work on an idle machine; the drain time leaves room for a very busy one.
v1::CompressRequest QueuedCompress() {
  v1::CompressRequest r;
  r.add_documents()->set_text(FillerText(300, 99));
  r.set_query("What is the capital of France?");
  r.mutable_spec()->set_method("finch");
  r.mutable_spec()->set_ratio(4);
  (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "32";
  return r;
}

// A Generate stream read on its own thread; `first_delta` flips when the first token arrived.
struct StreamingCall {
  grpc::ClientContext ctx;
  std::atomic<bool> first_delta{false};
  std::atomic<bool> finished{false};
  GenerateResult result;
  std::thread thread;

  void Start(KvcStubs& stubs, const v1::GenerateRequest& request) {
    Configure(ctx, {.timeout = std::chrono::milliseconds(90000)});
    thread = std::thread([this, &stubs, request] {
      auto reader = stubs.generator->Generate(&ctx, request);
      v1::GenerateResponse response;
      while (reader->Read(&response)) {
        if (response.has_delta()) {
          result.token_count += response.delta().token_ids_size();
          first_delta = true;
        } else if (response.has_usage()) {
          ++result.usage_messages;
          result.usage = response.usage();
        }
      }
      result.status = reader->Finish();
      finished = true;
    });
  }
};

class ServerShutdownTest : public ::testing::Test {
 protected:
  // The server belongs to the fixture so that TearDown can still read its log.
  ServerProcess* StartServer(const std::string& drain_seconds) {
    auto server = ServerProcess::Start({.args = {"--model", TestData("tiny_chat"), "--metrics-listen", "127.0.0.1:0",
                                                 "--drain-seconds", drain_seconds}});
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    server_ = *std::move(server);
    return server_.get();
  }

  // The server's log in the failure output (the server outlives the test body's expectations).
  void TearDown() override {
    if (HasFailure() && server_ != nullptr) {
      const std::string log = server_->Log();
      ADD_FAILURE() << "kvc-server log tail:\n" << log.substr(log.size() > 30000 ? log.size() - 30000 : 0);
    }
  }

  std::unique_ptr<ServerProcess> server_;

  static std::string SmallCache(KvcStubs& stubs) {
    v1::CompressRequest r;
    r.add_documents()->set_text("The capital of France is Paris. " + FillerText(40, 1));
    r.mutable_spec()->set_method("knorm");
    r.mutable_spec()->set_ratio(2);
    grpc::ClientContext ctx;
    Configure(ctx, {});
    v1::CompressResponse out;
    grpc::Status s = stubs.compressor->Compress(&ctx, r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out.cache_id();
  }

  // Seconds per generated token as the server measures it, from a short run after a warm-up.
  static double SecondsPerToken(KvcStubs& stubs, const std::string& id) {
    GenerateResult g = Generate(*stubs.generator, LongGenerate(id, 8));
    EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    g = Generate(*stubs.generator, LongGenerate(id, 64));
    EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    return std::max(g.usage.timings().mean_seconds_per_token(), 1e-4);
  }
};

TEST_F(ServerShutdownTest, SigtermDrainsInFlightCallsThenExitsZero) {
  ServerProcess* server = StartServer("60");
  ASSERT_NE(server, nullptr);
  KvcStubs stubs(server->NewChannel());
  const std::string id = SmallCache(stubs);
  // About three seconds of decoding, so that SIGTERM surely lands in the middle of it.
  const double per_token = SecondsPerToken(stubs, id);
  const int tokens = static_cast<int>(std::clamp(3.0 / per_token, 300.0, 3900.0));

  StreamingCall generate;
  generate.Start(stubs, LongGenerate(id, tokens));
  // A compression queued behind the decoding (the device has one worker).
  grpc::Status compress_status;
  v1::CompressResponse compressed;
  std::thread compress([&] {
    grpc::ClientContext ctx;
    Configure(ctx, {.timeout = std::chrono::milliseconds(90000)});
    compress_status = stubs.compressor->Compress(&ctx, QueuedCompress(), &compressed);
  });
  const absl::Time wait_until = absl::Now() + absl::Seconds(30);
  while (!generate.first_delta && absl::Now() < wait_until) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(generate.first_delta) << server->Log();
  absl::SleepFor(absl::Milliseconds(100));  // let the Compress arrive too

  const absl::Time term_at = absl::Now();
  const bool generate_in_flight = !generate.finished;
  ASSERT_EQ(kill(server->pid(), SIGTERM), 0);
  EXPECT_TRUE(generate_in_flight) << "the Generate ended before SIGTERM; the test proves nothing";
  // While draining, health says NOT_SERVING (or the call is refused) and new calls are refused.
  absl::SleepFor(absl::Milliseconds(200));
  if (server->Running()) {
    grpc::ClientContext ctx;
    Configure(ctx, {.timeout = std::chrono::milliseconds(2000)});
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = stubs.health->Check(&ctx, request, &response);
    EXPECT_TRUE(!s.ok() || response.status() != grpc::health::v1::HealthCheckResponse::SERVING)
        << "health is SERVING while draining";
    KvcStubs late(server->NewChannel());
    grpc::ClientContext late_ctx;
    Configure(late_ctx, {.timeout = std::chrono::milliseconds(2000)});
    v1::ModelInfo info;
    EXPECT_FALSE(late.compressor->GetModelInfo(&late_ctx, v1::GetModelInfoRequest(), &info).ok())
        << "a new call was accepted while draining";
  }

  generate.thread.join();
  compress.join();
  absl::StatusOr<int> code = server->Stop(absl::Seconds(60));
  const double exit_seconds = absl::ToDoubleSeconds(absl::Now() - term_at);
  ASSERT_TRUE(code.ok()) << code.status() << "\n" << server->Log();
  EXPECT_EQ(*code, 0) << server->Log();
  std::printf("decode %.2f ms/token; %d tokens; exited %.2fs after SIGTERM\n", per_token * 1000, tokens, exit_seconds);

  // The calls in flight finished normally.
  EXPECT_TRUE(generate.result.status.ok()) << generate.result.status.error_message() << "\n" << server->Log();
  EXPECT_EQ(generate.result.usage_messages, 1);
  EXPECT_EQ(generate.result.token_count, tokens);
  EXPECT_EQ(generate.result.usage.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_TRUE(compress_status.ok()) << compress_status.error_message();
  EXPECT_FALSE(compressed.cache_id().empty());
  EXPECT_NE(server->Log().find("\"msg\":\"stopped\""), std::string::npos) << server->Log();

  // Nothing listens any more.
  EXPECT_FALSE(PortAcceptsConnections(server->port()));
  KvcStubs after(server->NewChannel());
  grpc::ClientContext ctx;
  Configure(ctx, {.timeout = std::chrono::milliseconds(2000)});
  v1::ModelInfo info;
  EXPECT_EQ(after.compressor->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServerShutdownTest, DrainTimeoutCancelsWhatIsStillRunningAndStillExitsZero) {
  ServerProcess* server = StartServer("0.2");
  ASSERT_NE(server, nullptr);
  KvcStubs stubs(server->NewChannel());
  const std::string id = SmallCache(stubs);
  const double per_token = SecondsPerToken(stubs, id);
  // Far more decoding than the drain time allows (at least ~8 s of it, within the window).
  const int tokens = static_cast<int>(std::clamp(8.0 / per_token, 1000.0, 3900.0));
  ASSERT_GT(tokens * per_token, 1.0) << "decoding is too fast for this test to say anything";

  StreamingCall generate;
  generate.Start(stubs, LongGenerate(id, tokens));
  const absl::Time wait_until = absl::Now() + absl::Seconds(30);
  while (!generate.first_delta && absl::Now() < wait_until) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(generate.first_delta) << server->Log();

  const absl::Time term_at = absl::Now();
  ASSERT_FALSE(generate.finished);
  ASSERT_EQ(kill(server->pid(), SIGTERM), 0);
  generate.thread.join();
  const double call_end_seconds = absl::ToDoubleSeconds(absl::Now() - term_at);
  absl::StatusOr<int> code = server->Stop(absl::Seconds(30));
  const double exit_seconds = absl::ToDoubleSeconds(absl::Now() - term_at);
  ASSERT_TRUE(code.ok()) << code.status() << "\n" << server->Log();
  EXPECT_EQ(*code, 0) << server->Log();
  std::printf("decode %.2f ms/token; %d tokens asked; call ended %.2fs and process %.2fs after SIGTERM\n",
              per_token * 1000, tokens, call_end_seconds, exit_seconds);

  EXPECT_FALSE(generate.result.status.ok()) << "the call outlived a 0.2 s drain";
  EXPECT_EQ(generate.result.usage_messages, 0);
  EXPECT_LT(generate.result.token_count, tokens);
  EXPECT_LT(exit_seconds, 5.0) << "the drain timeout was not honoured";
  EXPECT_FALSE(PortAcceptsConnections(server->port()));
}

}  // namespace
}  // namespace kvc::testing
