// Bearer tokens (parsing, constant-time lookup, the per-call decision) and the listening credentials, then
// both behind a real in-process server: CacheServiceImpl over memory:// with the token check on plaintext,
// TLS and mutual TLS listeners. Certificates are minted per run with the openssl command line.
#include "service/auth.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "service/cache_service.h"
#include "service/store/cache_store.h"
#include "service/tls.h"

namespace kvc {
namespace {

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "kvc_auth_XXXXXX";
  char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return pattern;
}

std::string WriteFile(const std::string& dir, const std::string& name, const std::string& content) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// ---- BearerTokens -------------------------------------------------------------------------------------

TEST(BearerTokensTest, FileSkipsBlanksAndCommentsAndTrims) {
  const std::string dir = MakeTempDir();
  const std::string path =
      WriteFile(dir, "tokens", "# kvc tokens\n\n  alpha  \n\t# indented comment\nbeta\r\n   \ngamma delta\n");
  absl::StatusOr<std::unique_ptr<BearerTokens>> tokens = BearerTokens::FromFile(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ((*tokens)->size(), 3u);
  EXPECT_TRUE((*tokens)->Contains("alpha"));
  EXPECT_TRUE((*tokens)->Contains("beta"));
  EXPECT_TRUE((*tokens)->Contains("gamma delta"));
  EXPECT_FALSE((*tokens)->Contains("# kvc tokens"));
  EXPECT_FALSE((*tokens)->Contains(""));
}

TEST(BearerTokensTest, FileErrors) {
  const std::string dir = MakeTempDir();
  EXPECT_EQ(BearerTokens::FromFile(dir + "/absent").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(BearerTokens::FromFile(WriteFile(dir, "empty", "")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BearerTokens::FromFile(WriteFile(dir, "comments", "# only\n\n  # comments\n")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BearerTokensTest, Environment) {
  const char* kVar = "KVC_AUTH_TEST_TOKENS";
  ::unsetenv(kVar);
  EXPECT_EQ(BearerTokens::FromEnv(kVar).status().code(), absl::StatusCode::kNotFound);
  ::setenv(kVar, " , ,", 1);
  EXPECT_EQ(BearerTokens::FromEnv(kVar).status().code(), absl::StatusCode::kInvalidArgument);
  ::setenv(kVar, " one, two ,,three", 1);
  absl::StatusOr<std::unique_ptr<BearerTokens>> tokens = BearerTokens::FromEnv(kVar);
  ::unsetenv(kVar);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ((*tokens)->size(), 3u);
  for (const char* t : {"one", "two", "three"}) EXPECT_TRUE((*tokens)->Contains(t)) << t;
}

TEST(BearerTokensTest, ListRejectsEmpty) {
  EXPECT_EQ(BearerTokens::FromList({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BearerTokens::FromList({"a", ""}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BearerTokensTest, ContainsIsExact) {
  absl::StatusOr<std::unique_ptr<BearerTokens>> tokens = BearerTokens::FromList({"alpha", "beta"});
  ASSERT_TRUE(tokens.ok());
  EXPECT_TRUE((*tokens)->Contains("alpha"));
  EXPECT_TRUE((*tokens)->Contains("beta"));
  for (const char* t : {"", "alph", "alphaa", "Alpha", "beta ", "alphabeta", "gamma"}) {
    EXPECT_FALSE((*tokens)->Contains(t)) << t;
  }
}

TEST(BearerTokensTest, Authorize) {
  absl::StatusOr<std::unique_ptr<BearerTokens>> tokens = BearerTokens::FromList({"alpha"});
  ASSERT_TRUE(tokens.ok());
  const BearerTokens& t = **tokens;
  const std::string list = "/kvc.v1.CacheService/List";
  EXPECT_TRUE(t.Authorize(list, "Bearer alpha").ok());
  EXPECT_TRUE(t.Authorize(list, "bEaReR alpha").ok());
  EXPECT_EQ(t.Authorize(list, std::nullopt).message(), "missing bearer token");
  EXPECT_EQ(t.Authorize(list, "Basic alpha").message(), "missing bearer token");
  EXPECT_EQ(t.Authorize(list, "Bearer ").message(), "missing bearer token");
  EXPECT_EQ(t.Authorize(list, "alpha").message(), "missing bearer token");
  EXPECT_EQ(t.Authorize(list, "Bearer beta").message(), "invalid bearer token");
  EXPECT_EQ(t.Authorize(list, "Bearer beta").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(t.Authorize("/grpc.health.v1.Health/Check", std::nullopt).ok());
  EXPECT_TRUE(t.Authorize("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", std::nullopt).ok());
  // A prefix of an open service's name is not that service.
  EXPECT_FALSE(t.Authorize("/grpc.health.v1.HealthX/Check", std::nullopt).ok());
}

// ---- Certificates -------------------------------------------------------------------------------------

struct Certs {
  std::string dir, ca, server_cert, server_key, client_cert, client_key, other_key;
};

// A throwaway CA, a server certificate for localhost and a client certificate, all P-256.
const Certs& TestCerts() {
  static const Certs* certs = [] {
    auto* c = new Certs;
    c->dir = MakeTempDir();
    const std::string d = c->dir;
    WriteFile(d, "server.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    WriteFile(d, "client.ext", "extendedKeyUsage=clientAuth\n");
    const std::string newkey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string cmd = absl::StrCat(
        "cd ", d, " && (openssl req -x509 ", newkey, " -keyout ca.key -out ca.pem -days 2 -subj /CN=kvc-test-ca",
        " && openssl req ", newkey, " -keyout server.key -out server.csr -subj /CN=localhost",
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2",
        " -extfile server.ext",
        " && openssl req ", newkey, " -keyout client.key -out client.csr -subj /CN=kvc-test-client",
        " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2",
        " -extfile client.ext",
        " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out other.key",
        ") >/dev/null 2>&1");
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    c->ca = d + "/ca.pem";
    c->server_cert = d + "/server.pem";
    c->server_key = d + "/server.key";
    c->client_cert = d + "/client.pem";
    c->client_key = d + "/client.key";
    c->other_key = d + "/other.key";
    return c;
  }();
  return *certs;
}

TEST(ServerCredentialsTest, Errors) {
  const Certs& c = TestCerts();
  auto code = [](const TlsOptions& o) { return MakeServerCredentials(o).status().code(); };
  EXPECT_TRUE(MakeServerCredentials({}).ok());
  EXPECT_EQ(code({c.server_cert, "", ""}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({"", c.server_key, ""}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({"", "", c.ca}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({c.dir + "/absent.pem", c.server_key, ""}), absl::StatusCode::kNotFound);
  EXPECT_EQ(code({c.server_cert, c.dir + "/absent.key", ""}), absl::StatusCode::kNotFound);
  EXPECT_EQ(code({c.server_cert, c.server_key, c.dir + "/absent-ca.pem"}), absl::StatusCode::kNotFound);
  const std::string garbage = WriteFile(c.dir, "garbage.pem", "not a pem file\n");
  EXPECT_EQ(code({garbage, c.server_key, ""}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({c.server_cert, garbage, ""}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({c.server_cert, c.server_key, garbage}), absl::StatusCode::kInvalidArgument);
  // A certificate given as the key, and a key that belongs to another certificate.
  EXPECT_EQ(code({c.server_cert, c.server_cert, ""}), absl::StatusCode::kInvalidArgument);
  absl::Status mismatch = MakeServerCredentials({c.server_cert, c.other_key, ""}).status();
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatch.message().find("does not match"), std::string::npos) << mismatch;
  EXPECT_TRUE(MakeServerCredentials({c.server_cert, c.server_key, ""}).ok());
  EXPECT_TRUE(MakeServerCredentials({c.server_cert, c.server_key, c.ca}).ok());
}

// ---- A server with the token check --------------------------------------------------------------------

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(5);
}

class AuthServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<CacheStore>> store = OpenCacheStore("memory://", {});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    CacheServiceOptions options;
    options.executor.threads = 1;
    absl::StatusOr<std::unique_ptr<CacheServiceImpl>> service = CacheServiceImpl::Create(store_.get(), options);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = std::move(*service);
    absl::StatusOr<std::unique_ptr<BearerTokens>> tokens = BearerTokens::FromList({"alpha", "beta"});
    ASSERT_TRUE(tokens.ok());
    tokens_ = std::move(*tokens);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(Deadline());
    server_.reset();
    service_.reset();
    store_.reset();
  }

  // Starts the server on a loopback port with `tls` and the token check.
  void Start(const TlsOptions& tls) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
        MakeServerCredentials(tls, MakeBearerTokenProcessor(tokens_));
    ASSERT_TRUE(creds.ok()) << creds.status();
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  std::shared_ptr<grpc::Channel> Channel(std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    // The listener is on 127.0.0.1; the certificate names localhost.
    args.SetSslTargetNameOverride("localhost");
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_), creds, args);
  }

  static grpc::Status List(const std::shared_ptr<grpc::Channel>& channel, const std::string& authorization) {
    std::unique_ptr<kvc::v1::CacheService::Stub> stub = kvc::v1::CacheService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    kvc::v1::ListCachesRequest request;
    kvc::v1::ListCachesResponse response;
    return stub->List(&ctx, request, &response);
  }

  // grpc.health.v1.Health/Check for the whole server. Debian ships no health stubs, so the request (an
  // empty HealthCheckRequest: zero bytes) goes through the generic stub.
  static grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel, std::string* response_bytes) {
    grpc::GenericStub stub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    grpc::ByteBuffer request(nullptr, 0), response;
    grpc::Status status;
    absl::Notification done;
    stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    std::vector<grpc::Slice> slices;
    if (status.ok() && response.Dump(&slices).ok()) {
      for (const grpc::Slice& s : slices) response_bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    return status;
  }

  std::unique_ptr<CacheStore> store_;
  std::unique_ptr<CacheServiceImpl> service_;
  std::shared_ptr<const BearerTokens> tokens_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(AuthServerTest, PlaintextRequiresToken) {
  Start({});
  std::shared_ptr<grpc::Channel> channel = Channel(grpc::InsecureChannelCredentials());

  grpc::Status missing = List(channel, "");
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(missing.error_message(), "missing bearer token");
  grpc::Status wrong = List(channel, "Bearer gamma");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(wrong.error_message(), "invalid bearer token");
  EXPECT_EQ(List(channel, "Basic alpha").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status beta = List(channel, "Bearer beta");
  EXPECT_TRUE(beta.ok()) << beta.error_code() << " " << beta.error_message();
  grpc::Status alpha = List(channel, "bearer alpha");
  EXPECT_TRUE(alpha.ok()) << alpha.error_code() << " " << alpha.error_message();

  // Probes carry no token.
  std::string health;
  grpc::Status probe = HealthCheck(channel, &health);
  EXPECT_TRUE(probe.ok()) << probe.error_code() << " " << probe.error_message();
  EXPECT_EQ(health, std::string("\x08\x01", 2));  // status: SERVING
}

// A rejected call never reaches the handler: an unauthenticated Delete leaves the value in place.
TEST_F(AuthServerTest, RejectedCallDoesNotRunHandler) {
  const std::string id(64, 'a');
  ASSERT_TRUE(store_->Put(id, "value").ok());
  Start({});
  std::unique_ptr<kvc::v1::CacheService::Stub> stub =
      kvc::v1::CacheService::NewStub(Channel(grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  kvc::v1::DeleteCacheRequest request;
  request.set_cache_id(id);
  kvc::v1::DeleteCacheResponse response;
  EXPECT_EQ(stub->Delete(&ctx, request, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(store_->Stat(id).ok());

  // The same call with a token does delete, so the id above was a valid target.
  grpc::ClientContext authed;
  authed.set_deadline(Deadline());
  authed.AddMetadata("authorization", "Bearer alpha");
  grpc::Status deleted = stub->Delete(&authed, request, &response);
  EXPECT_TRUE(deleted.ok()) << deleted.error_code() << " " << deleted.error_message();
  EXPECT_FALSE(store_->Stat(id).ok());
}

TEST_F(AuthServerTest, Tls) {
  const Certs& c = TestCerts();
  Start({c.server_cert, c.server_key, ""});
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(c.ca);
  std::shared_ptr<grpc::Channel> channel = Channel(grpc::SslCredentials(ssl));

  grpc::Status ok = List(channel, "Bearer alpha");
  EXPECT_TRUE(ok.ok()) << ok.error_code() << " " << ok.error_message();
  EXPECT_EQ(List(channel, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  std::string health;
  grpc::Status probe = HealthCheck(channel, &health);
  EXPECT_TRUE(probe.ok()) << probe.error_code() << " " << probe.error_message();

  // A plaintext client cannot talk to a TLS listener.
  EXPECT_EQ(List(Channel(grpc::InsecureChannelCredentials()), "Bearer alpha").error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(AuthServerTest, MutualTls) {
  const Certs& c = TestCerts();
  Start({c.server_cert, c.server_key, c.ca});

  grpc::SslCredentialsOptions anonymous;
  anonymous.pem_root_certs = ReadFile(c.ca);
  EXPECT_EQ(List(Channel(grpc::SslCredentials(anonymous)), "Bearer alpha").error_code(),
            grpc::StatusCode::UNAVAILABLE);

  grpc::SslCredentialsOptions with_cert = anonymous;
  with_cert.pem_cert_chain = ReadFile(c.client_cert);
  with_cert.pem_private_key = ReadFile(c.client_key);
  std::shared_ptr<grpc::Channel> channel = Channel(grpc::SslCredentials(with_cert));
  grpc::Status ok = List(channel, "Bearer beta");
  EXPECT_TRUE(ok.ok()) << ok.error_code() << " " << ok.error_message();
  // A client certificate does not replace the token.
  EXPECT_EQ(List(channel, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace kvc
