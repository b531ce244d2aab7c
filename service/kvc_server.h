// KvcServer: one kvc-server process. It opens the cache store, starts one gRPC listener with the roles the
// configuration names (compress, cache, generate), gRPC health per role and server reflection, serves the
// metrics on their own port, and then loads the model in the background (LoadModel).
//
// Health: the service names are "kvc.v1.Compressor", "kvc.v1.CacheService" and "kvc.v1.Generator", one
// per configured role, plus "" for the whole server. The cache role is SERVING as soon as the listener is
// up; the model roles are NOT_SERVING (and their calls UNAVAILABLE) until LoadModel succeeds; "" is SERVING
// when every configured role is. During Shutdown all of them go NOT_SERVING.
//
// Ownership: owns the store, the model, the scheduler, the services, the gRPC server and the metrics
// endpoint. Borrows the log, which must outlive it.
// Thread safety: LoadModel and Shutdown may run on different threads; each is called at most once.
#ifndef KVC_SERVICE_KVC_SERVER_H_
#define KVC_SERVICE_KVC_SERVER_H_

#include <atomic>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/logging.h"
#include "service/server_config.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace kvc {

class CacheServiceImpl;
class CacheStore;
class CompressorGate;
class CompressorServiceImpl;
class GeneratorGate;
class GeneratorServiceImpl;
class ModelRuntime;
class PausePoints;
class Scheduler;
class SchedulerCollector;
class ServiceMetrics;

// Health service names of the roles.
inline constexpr char kCompressorHealthName[] = "kvc.v1.Compressor";
inline constexpr char kCacheHealthName[] = "kvc.v1.CacheService";
inline constexpr char kGeneratorHealthName[] = "kvc.v1.Generator";

class KvcServer {
 public:
  // Everything but the model. Errors name what failed: INVALID_ARGUMENT for a bad configuration value,
  // NOT_FOUND for missing TLS or token files, UNAVAILABLE when an address cannot be bound or the store
  // cannot be opened.
  static absl::StatusOr<std::unique_ptr<KvcServer>> Start(const ServerConfig& config, Log* log);
  ~KvcServer();

  KvcServer(const KvcServer&) = delete;
  KvcServer& operator=(const KvcServer&) = delete;

  // Loads the model (when a configured role needs it), then opens the model roles and marks them SERVING.
  // Blocks for the load. Returns the loader's error, after which those roles stay NOT_SERVING.
  absl::Status LoadModel();

  // Graceful stop: every health status NOT_SERVING, no new calls, in-flight calls get up to
  // config.drain_seconds to finish (later ones are cancelled), then the scheduler drains and the server
  // stops. Returns true when everything finished within the drain time. Idempotent.
  bool Shutdown();

  int port() const { return port_; }                  // the bound gRPC port
  int metrics_port() const { return metrics_port_; }  // 0 when metrics are off
  bool model_loaded() const { return model_loaded_.load(); }

 private:
  explicit KvcServer(const ServerConfig& config, Log* log);
  absl::Status Init();
  bool HasRole(const std::string& role) const;
  void SetServing(const char* service, bool serving);

  const ServerConfig config_;
  Log* const log_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<PausePoints> pause_points_;  // test hook; null unless --test-pause-dir; outlives the roles
  std::unique_ptr<CacheStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::shared_ptr<SchedulerCollector> scheduler_metrics_;  // registered with exposer_; reads scheduler_
  std::unique_ptr<CacheServiceImpl> cache_service_;
  std::unique_ptr<CompressorGate> compressor_gate_;
  std::unique_ptr<GeneratorGate> generator_gate_;
  std::unique_ptr<ModelRuntime> runtime_;
  std::unique_ptr<CompressorServiceImpl> compressor_;
  std::unique_ptr<GeneratorServiceImpl> generator_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::atomic<bool> model_loaded_{false};
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_result_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kvc

#endif  // KVC_SERVICE_KVC_SERVER_H_
