#include "service/kvc_server.h"

#include <algorithm>
#include <chrono>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "compressor/util/status_macros.h"
#include "service/auth.h"
#include "service/cache_service.h"
#include "service/compress_request.h"
#include "service/compressor_service.h"
#include "service/generator_service.h"
#include "service/metered_store.h"
#include "service/metrics.h"
#include "service/model_runtime.h"
#include "service/pause_points.h"
#include "service/request_interceptor.h"
#include "service/role_gate.h"
#include "service/scheduler.h"
#include "service/scheduler_metrics.h"
#include "service/store/cache_store.h"
#include "service/tls.h"

namespace kvc {
namespace {

// The bearer tokens the configuration asks for: the token file, else KVC_AUTH_TOKENS, else none (an open
// server). A set but empty variable is a mistake worth failing on rather than silently opening the server.
absl::StatusOr<std::shared_ptr<const BearerTokens>> LoadTokens(const ServerConfig& config) {
  if (!config.auth_token_file.empty()) {
    KVC_ASSIGN_OR_RETURN(auto tokens, BearerTokens::FromFile(config.auth_token_file));
    return std::shared_ptr<const BearerTokens>(std::move(tokens));
  }
  auto tokens = BearerTokens::FromEnv(kAuthTokensVariable);
  if (absl::IsNotFound(tokens.status())) return std::shared_ptr<const BearerTokens>();
  KVC_RETURN_IF_ERROR(tokens.status());
  return std::shared_ptr<const BearerTokens>(*std::move(tokens));
}

}  // namespace

KvcServer::KvcServer(const ServerConfig& config, Log* log) : config_(config), log_(log) {}

KvcServer::~KvcServer() {
  Shutdown();
  // The exposer's thread reads the scheduler (scheduler_metrics_) on each scrape, and members go in the
  // reverse order of their declaration, the scheduler before the exposer: stop the exposer first.
  exposer_.reset();
}

bool KvcServer::HasRole(const std::string& role) const {
  return std::find(config_.roles.begin(), config_.roles.end(), role) != config_.roles.end();
}

absl::StatusOr<std::unique_ptr<KvcServer>> KvcServer::Start(const ServerConfig& config, Log* log) {
  if (log == nullptr) return absl::InvalidArgumentError("log: required");
  std::unique_ptr<KvcServer> server(new KvcServer(config, log));
  KVC_RETURN_IF_ERROR(server->Init());
  return server;
}

absl::Status KvcServer::Init() {
  registry_ = std::make_shared<prometheus::Registry>();
  metrics_ = std::make_unique<ServiceMetrics>(*registry_);
  if (!config_.metrics_listen.empty()) {
    KVC_ASSIGN_OR_RETURN(exposer_, StartMetricsExposer(config_.metrics_listen, registry_));
    auto ports = exposer_->GetListeningPorts();
    if (!ports.empty()) metrics_port_ = ports.front();
  }

  if (!config_.test_pause_dir.empty()) {
    KVC_ASSIGN_OR_RETURN(pause_points_, PausePoints::Create(config_.test_pause_dir));
    log_->Warn("test pause points are on; calls may be held", {{"dir", config_.test_pause_dir}});
  }

  StoreOptions store_options;
  store_options.capacity_bytes = config_.store_capacity_bytes;
  // The store knows nothing of metrics; it tells each eviction, and the server counts it. Only the file
  // store evicts (Redis evicts inside Redis), and it may already do so while it opens, past a capacity that
  // shrank since the last run: hence the fixed label.
  store_options.on_evict = [metrics = metrics_.get()](int64_t bytes) { metrics->RecordEviction("file", bytes); };
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<CacheStore> store, OpenCacheStore(config_.store, store_options));
  metrics_->InitEvictions(store->backend());
  store_ = std::make_unique<MeteredStore>(std::move(store), metrics_.get());

  const bool model_roles = HasRole("compress") || HasRole("generate");
  if (model_roles) {
    SchedulerOptions scheduler_options;
    scheduler_options.name = config_.device;
    scheduler_options.max_queue_tokens = config_.max_queue_tokens;
    KVC_ASSIGN_OR_RETURN(scheduler_, Scheduler::Create(scheduler_options));
    if (exposer_ != nullptr) {
      scheduler_metrics_ = std::make_shared<SchedulerCollector>(scheduler_.get(), config_.max_queue_tokens);
      exposer_->RegisterCollectable(scheduler_metrics_);
    }
  }

  KVC_ASSIGN_OR_RETURN(std::shared_ptr<const BearerTokens> tokens, LoadTokens(config_));
  TlsOptions tls{config_.tls_cert, config_.tls_key, config_.tls_client_ca};
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                       MakeServerCredentials(tls, tokens ? MakeBearerTokenProcessor(tokens) : nullptr));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config_.listen, credentials, &port_);
  const int max_message = static_cast<int>(std::min<int64_t>(config_.max_message_bytes, INT32_MAX));
  builder.SetMaxReceiveMessageSize(max_message);
  builder.SetMaxSendMessageSize(max_message);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MakeRequestInterceptorFactory(metrics_.get(), log_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  if (HasRole("cache")) {
    CacheServiceOptions cache_options;
    KVC_ASSIGN_OR_RETURN(cache_service_, CacheServiceImpl::Create(store_.get(), cache_options));
    builder.RegisterService(cache_service_.get());
  }
  if (HasRole("compress")) {
    compressor_gate_ = std::make_unique<CompressorGate>();
    builder.RegisterService(compressor_gate_.get());
  }
  if (HasRole("generate")) {
    generator_gate_ = std::make_unique<GeneratorGate>();
    builder.RegisterService(generator_gate_.get());
  }
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat("listen: cannot bind ", config_.listen,
                                               " (in use, or not a valid host:port)"));
  }
  SetServing(kCacheHealthName, HasRole("cache"));
  SetServing(kCompressorHealthName, false);
  SetServing(kGeneratorHealthName, false);
  SetServing("", !model_roles);
  log_->Info("listening", {{"address", config_.listen},
                           {"port", port_},
                           {"roles", absl::StrJoin(config_.roles, ",")},
                           {"store", StoreUriForDisplay(config_.store)},
                           {"metrics_port", metrics_port_},
                           {"tls", !config_.tls_cert.empty()},
                           {"mutual_tls", !config_.tls_client_ca.empty()},
                           {"auth", tokens != nullptr}});
  return absl::OkStatus();
}

void KvcServer::SetServing(const char* service, bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(service, serving);
}

absl::Status KvcServer::LoadModel() {
  if (!HasRole("compress") && !HasRole("generate")) return absl::OkStatus();
  const auto t0 = std::chrono::steady_clock::now();
  ModelRuntimeOptions options;
  options.path = config_.model;
  options.device = config_.device;
  options.dtype = config_.dtype.empty() ? "auto" : config_.dtype;
  options.num_threads = config_.threads;
  options.weights = config_.weights;
  absl::StatusOr<std::unique_ptr<ModelRuntime>> runtime = ModelRuntime::Load(options);
  if (!runtime.ok()) {
    log_->Error("model load failed", {{"error", runtime.status().ToString()}});
    return runtime.status();
  }
  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::CancelledError("the server shut down while the model was loading");
  runtime_ = *std::move(runtime);
  metrics_->SetModelInfo(runtime_->name(), runtime_->fingerprint(), runtime_->device(), runtime_->dtype());
  metrics_->SetDeviceMemoryBytes(static_cast<double>(runtime_->device_memory_bytes()));
  if (HasRole("compress")) {
    CompressorServiceOptions o;
    o.limits.max_message_bytes = config_.max_message_bytes;
    o.limits.max_queue_tokens = config_.max_queue_tokens;
    o.limits.max_context_tokens = config_.max_context_tokens;
    o.store_backend = store_->backend();
    o.pause_points = pause_points_.get();
    KVC_ASSIGN_OR_RETURN(compressor_, CompressorServiceImpl::Create(runtime_.get(), scheduler_.get(), store_.get(),
                                                                    metrics_.get(), o));
    compressor_gate_->Open(compressor_.get());
    SetServing(kCompressorHealthName, true);
  }
  if (HasRole("generate")) {
    GeneratorServiceOptions o;
    o.max_documents = CompressorLimits().max_documents;  // one limit in ModelInfo covers both roles
    o.pause_points = pause_points_.get();
    KVC_ASSIGN_OR_RETURN(generator_, GeneratorServiceImpl::Create(runtime_.get(), scheduler_.get(), store_.get(),
                                                                  metrics_.get(), o));
    generator_gate_->Open(generator_.get());
    SetServing(kGeneratorHealthName, true);
  }
  SetServing("", true);
  model_loaded_ = true;
  log_->Info("model loaded", {{"model", runtime_->name()},
                              {"fingerprint", runtime_->fingerprint()},
                              {"device", runtime_->device()},
                              {"dtype", runtime_->dtype()},
                              {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}});
  return absl::OkStatus();
}

bool KvcServer::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return shutdown_result_;
  shut_down_ = true;
  if (server_ == nullptr) return shutdown_result_ = true;
  const absl::Duration drain = absl::Seconds(config_.drain_seconds);
  const absl::Time start = absl::Now();
  log_->Info("draining", {{"drain_seconds", config_.drain_seconds}});
  // Probes see NOT_SERVING first, so that load balancers stop sending calls while in-flight ones finish.
  server_->GetHealthCheckService()->Shutdown();
  server_->Shutdown(absl::ToChronoTime(start + drain));
  bool in_time = absl::Now() - start < drain;
  if (scheduler_ != nullptr) in_time = scheduler_->Drain(std::max(absl::ZeroDuration(), drain - (absl::Now() - start))) && in_time;
  server_->Wait();
  log_->Info("stopped", {{"drained_in_time", in_time},
                         {"seconds", absl::ToDoubleSeconds(absl::Now() - start)}});
  return shutdown_result_ = in_time;
}

}  // namespace kvc
