// End to end: SIGTERM to the real kvc-server binary while a Generate and a Compress are in flight. Within
// the drain time the calls complete and the process exits 0; past it the calls are cancelled and the
// process still exits 0. Either way nothing listens on the port afterwards. The calls are held in flight at
// the server's test pause points (service/pause_points.h), so neither case depends on the machine's speed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

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

v1::CompressRequest QueuedCompress() {
  v1::CompressRequest r;
  r.add_documents()->set_text(FillerText(300, 99));
  r.set_query("What is the capital of France?");
  r.mutable_spec()->set_method("finch");
  r.mutable_spec()->set_ratio(4);
  (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "32";
  return r;
}

// A Generate stream read on its own thread.
std::unique_ptr<CallInFlight> StartGenerate(KvcStubs& stubs, const v1::GenerateRequest& request,
                                            GenerateResult* result) {
  return std::make_unique<CallInFlight>(std::chrono::milliseconds(600000),
                                        [&stubs, request, result](grpc::ClientContext* ctx) {
                                          *result = Generate(*stubs.generator, ctx, request);
                                          return result->status;
                                        });
}

// A bound on waiting for the server, far past anything a working server needs; never a guess of speed.
constexpr absl::Duration kPatience = absl::Seconds(90);

class ServerShutdownTest : public ::testing::Test {
 protected:
  // The server belongs to the fixture so that TearDown can still read its log.
  ServerProcess* StartServer(const std::string& drain_seconds) {
    auto server = ServerProcess::Start({.args = {"--model", TestData("tiny_chat"), "--metrics-listen", "127.0.0.1:0",
                                                 "--drain-seconds", drain_seconds},
                                        .pause_points = true});
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
};

TEST_F(ServerShutdownTest, SigtermDrainsInFlightCallsThenExitsZero) {
  ServerProcess* server = StartServer("60");
  ASSERT_NE(server, nullptr);
  const PauseControl& pause = server->pause();
  KvcStubs stubs(server->NewChannel());
  const std::string id = SmallCache(stubs);
  const int tokens = 40;

  // A Generate held between two decode steps (two tokens out), and a Compress queued behind it (the device
  // has one worker): both are in flight when SIGTERM comes, whatever the machine's speed.
  GenerateResult generated;
  ASSERT_TRUE(pause.Arm(pause_point::kGenerateDecodeStep).ok());  // before the call, however fast it decodes
  std::unique_ptr<CallInFlight> generate = StartGenerate(stubs, LongGenerate(id, tokens), &generated);
  ASSERT_TRUE(pause.HoldAtArmed(pause_point::kGenerateDecodeStep, 3, absl::Now() + kPatience).ok()) << server->Log();
  ASSERT_TRUE(pause.Arm(pause_point::kCompressQueued).ok());
  v1::CompressResponse compressed;
  CallInFlight compress(std::chrono::milliseconds(600000), [&](grpc::ClientContext* ctx) {
    return stubs.compressor->Compress(ctx, QueuedCompress(), &compressed);
  });
  ASSERT_TRUE(pause.WaitHeld(pause_point::kCompressQueued, absl::Now() + kPatience).ok()) << server->Log();
  ASSERT_TRUE(pause.Release(pause_point::kCompressQueued).ok());

  const absl::Time term_at = absl::Now();
  ASSERT_EQ(kill(server->pid(), SIGTERM), 0);
  // While draining, health says NOT_SERVING (or the call is refused) and new calls are refused. The server
  // says when it starts draining; the held Generate keeps it draining for as long as the checks take.
  const absl::Time until = absl::Now() + kPatience;
  while (server->Log().find("\"msg\":\"draining\"") == std::string::npos && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_NE(server->Log().find("\"msg\":\"draining\""), std::string::npos) << server->Log();
  {
    grpc::ClientContext ctx;
    Configure(ctx, {.timeout = std::chrono::milliseconds(10000)});
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = stubs.health->Check(&ctx, request, &response);
    EXPECT_TRUE(!s.ok() || response.status() != grpc::health::v1::HealthCheckResponse::SERVING)
        << "health is SERVING while draining";
    KvcStubs late(server->NewChannel());
    grpc::ClientContext late_ctx;
    Configure(late_ctx, {.timeout = std::chrono::milliseconds(10000)});
    v1::ModelInfo info;
    EXPECT_FALSE(late.compressor->GetModelInfo(&late_ctx, v1::GetModelInfoRequest(), &info).ok())
        << "a new call was accepted while draining";
  }
  EXPECT_FALSE(generate->done()) << "the held Generate ended during the drain";
  EXPECT_TRUE(server->Running());

  // Let the work go on: both calls finish normally within the 60 s drain, then the process exits 0.
  ASSERT_TRUE(pause.Release(pause_point::kGenerateDecodeStep).ok());
  const grpc::Status generate_status = generate->Wait();
  const grpc::Status compress_status = compress.Wait();
  absl::StatusOr<int> code = server->Stop(kPatience);
  const double exit_seconds = absl::ToDoubleSeconds(absl::Now() - term_at);
  ASSERT_TRUE(code.ok()) << code.status() << "\n" << server->Log();
  EXPECT_EQ(*code, 0) << server->Log();
  std::printf("%d tokens; exited %.2fs after SIGTERM\n", tokens, exit_seconds);

  EXPECT_TRUE(generate_status.ok()) << generate_status.error_message() << "\n" << server->Log();
  EXPECT_EQ(generated.usage_messages, 1);
  EXPECT_EQ(generated.token_count, tokens);
  EXPECT_EQ(generated.usage.finish_reason(), v1::FINISH_REASON_LENGTH);
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
  const PauseControl& pause = server->pause();
  KvcStubs stubs(server->NewChannel());
  const std::string id = SmallCache(stubs);
  const int tokens = 40;

  // Held between two decode steps for as long as the test wants: far past the 0.2 s drain.
  GenerateResult generated;
  ASSERT_TRUE(pause.Arm(pause_point::kGenerateDecodeStep).ok());  // before the call, however fast it decodes
  std::unique_ptr<CallInFlight> generate = StartGenerate(stubs, LongGenerate(id, tokens), &generated);
  ASSERT_TRUE(pause.HoldAtArmed(pause_point::kGenerateDecodeStep, 3, absl::Now() + kPatience).ok()) << server->Log();

  const absl::Time term_at = absl::Now();
  ASSERT_EQ(kill(server->pid(), SIGTERM), 0);
  // The drain time runs out with the work still held: the server cancels the call.
  const grpc::Status status = generate->Wait();
  const double call_end_seconds = absl::ToDoubleSeconds(absl::Now() - term_at);
  EXPECT_TRUE(pause.Held(pause_point::kGenerateDecodeStep)) << "the call ended without the drain timing out";
  // Then the work reaches its next check, sees the cancel and stops; the process exits 0.
  ASSERT_TRUE(pause.Release(pause_point::kGenerateDecodeStep).ok());
  absl::StatusOr<int> code = server->Stop(kPatience);
  const double exit_seconds = absl::ToDoubleSeconds(absl::Now() - term_at);
  ASSERT_TRUE(code.ok()) << code.status() << "\n" << server->Log();
  EXPECT_EQ(*code, 0) << server->Log();
  std::printf("%d tokens asked; call ended %.2fs and process %.2fs after SIGTERM\n", tokens, call_end_seconds,
              exit_seconds);

  EXPECT_FALSE(status.ok()) << "the call outlived a 0.2 s drain";
  EXPECT_EQ(generated.usage_messages, 0);
  EXPECT_LT(generated.token_count, tokens);
  EXPECT_NE(server->Log().find("\"drained_in_time\":false"), std::string::npos) << server->Log();
  EXPECT_FALSE(PortAcceptsConnections(server->port()));
}

}  // namespace
}  // namespace kvc::testing
