#include "client/cpp/testing/test_server.h"

#include <chrono>

#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "compressor/util/status_macros.h"
#include "service/auth.h"

namespace kvc::testing {

absl::StatusOr<std::unique_ptr<TestServer>> TestServer::Start(const TestServerOptions& options) {
  std::unique_ptr<TestServer> server(new TestServer());
  KVC_ASSIGN_OR_RETURN(server->store_, OpenCacheStore("memory://", StoreOptions{}));
  CacheServiceOptions cache_options;
  cache_options.executor.threads = 2;
  KVC_ASSIGN_OR_RETURN(server->cache_, CacheServiceImpl::Create(server->store_.get(), cache_options));

  std::shared_ptr<grpc::AuthMetadataProcessor> auth;
  if (!options.tokens.empty()) {
    KVC_ASSIGN_OR_RETURN(std::unique_ptr<BearerTokens> tokens, BearerTokens::FromList(options.tokens));
    auth = MakeBearerTokenProcessor(std::shared_ptr<const BearerTokens>(std::move(tokens)));
  }
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                       MakeServerCredentials(options.tls, auth));

  // Process-wide switch, read when a server is built: the server then serves grpc.health.v1.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", credentials, &port);
  builder.RegisterService(options.cache_service_override != nullptr ? options.cache_service_override
                                                                    : server->cache_.get());
  builder.RegisterService(&server->compressor_);
  builder.RegisterService(&server->generator_);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) return absl::InternalError("test server: cannot start");
  server->target_ = absl::StrCat("127.0.0.1:", port);
  for (const std::string& service : options.healthy_services) server->SetServing(service, true);
  return server;
}

TestServer::~TestServer() {
  if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

void TestServer::SetServing(const std::string& service, bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(service, serving);
}

}  // namespace kvc::testing
