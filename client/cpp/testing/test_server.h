// An in-process kvc server on a loopback port for client and CLI tests: the real cache role
// (CacheServiceImpl over a memory:// store), the fake compress and generate roles of fake_services.h,
// gRPC's own health service with one entry per role, and optionally the real bearer-token check.
//
// Ownership: owns the server, the services and the store. Destruction shuts the server down.
// Thread safety: the accessors may be used while calls are in flight; the fakes and the store are
// thread-safe.
#ifndef KVC_CLIENT_CPP_TESTING_TEST_SERVER_H_
#define KVC_CLIENT_CPP_TESTING_TEST_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "client/cpp/testing/fake_services.h"
#include "service/cache_service.h"
#include "service/store/cache_store.h"
#include "service/tls.h"

namespace kvc::testing {

struct TestServerOptions {
  // Non-empty: every call except health needs "authorization: Bearer <one of these>".
  std::vector<std::string> tokens;
  // Listening credentials: plaintext by default; cert and key for TLS, plus client_ca_file for mutual TLS.
  TlsOptions tls;
  // Serves this instead of the real cache role (e.g. a fake that sends corrupt streams). Borrowed.
  grpc::Service* cache_service_override = nullptr;
  // Services registered SERVING with the health service, besides "" (the whole server).
  std::vector<std::string> healthy_services = {"kvc.v1.Compressor", "kvc.v1.CacheService", "kvc.v1.Generator"};
};

class TestServer {
 public:
  static absl::StatusOr<std::unique_ptr<TestServer>> Start(const TestServerOptions& options = {});
  ~TestServer();

  // "127.0.0.1:<port>".
  const std::string& target() const { return target_; }
  FakeCompressor& compressor() { return compressor_; }
  FakeGenerator& generator() { return generator_; }
  CacheStore& store() { return *store_; }
  // Sets a service's health status (registering it if new).
  void SetServing(const std::string& service, bool serving);

 private:
  TestServer() = default;

  std::unique_ptr<CacheStore> store_;
  std::unique_ptr<CacheServiceImpl> cache_;
  FakeCompressor compressor_;
  FakeGenerator generator_;
  std::unique_ptr<grpc::Server> server_;
  std::string target_;
};

}  // namespace kvc::testing

#endif  // KVC_CLIENT_CPP_TESTING_TEST_SERVER_H_
