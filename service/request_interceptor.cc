#include "service/request_interceptor.h"

#include <chrono>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace kvc {
namespace {

using grpc::experimental::InterceptionHookPoints;

constexpr size_t kMaxClientRequestIdBytes = 128;

// Probes arrive every few seconds from orchestrators; a log line each would drown the real calls.
bool IsQuiet(absl::string_view path) {
  return absl::StartsWith(path, "/grpc.health.") || absl::StartsWith(path, "/grpc.reflection.");
}

std::optional<std::string> ClientRequestId(const std::multimap<grpc::string_ref, grpc::string_ref>& md) {
  auto it = md.find(kRequestIdMetadata);
  if (it == md.end() || it->second.empty() || it->second.size() > kMaxClientRequestIdBytes) return std::nullopt;
  std::string id(it->second.data(), it->second.size());
  for (char c : id) {
    if (!absl::ascii_isgraph(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return id;
}

class RequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  RequestInterceptor(std::string path, ServiceMetrics* metrics, Log* log)
      : path_(std::move(path)), rpc_(RpcLabel(path_)), metrics_(metrics), log_(log),
        start_(std::chrono::steady_clock::now()) {
    if (metrics_ != nullptr) inflight_.emplace(metrics_->Inflight());
  }

  ~RequestInterceptor() override {
    // A call that ends without a status (the client went away first) still counts.
    if (!recorded_) Record(grpc::StatusCode::CANCELLED, "the client cancelled the call");
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      if (auto* md = methods->GetRecvInitialMetadata(); md != nullptr) {
        if (auto id = ClientRequestId(*md)) request_id_ = *std::move(id);
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      if (auto* md = methods->GetSendInitialMetadata(); md != nullptr) {
        md->emplace(kRequestIdMetadata, request_id());
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      Record(status.error_code(), status.error_message());
    }
    methods->Proceed();
  }

 private:
  const std::string& request_id() {
    if (request_id_.empty()) request_id_ = NewRequestId();
    return request_id_;
  }

  void Record(grpc::StatusCode code, const std::string& message) {
    recorded_ = true;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const std::string code_name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    if (metrics_ != nullptr) metrics_->RecordRequest(rpc_, code_name, seconds);
    if (log_ == nullptr || IsQuiet(path_)) return;
    LogFields fields = {{"request_id", request_id()}, {"rpc", rpc_}, {"code", code_name},
                        {"seconds", seconds}};
    if (code == grpc::StatusCode::OK) {
      log_->Info("request", fields);
      return;
    }
    fields.emplace_back("error", message);
    // Server-side failures deserve attention; a client's bad input or cancellation does not.
    const bool server_fault = code == grpc::StatusCode::INTERNAL || code == grpc::StatusCode::UNKNOWN ||
                              code == grpc::StatusCode::DATA_LOSS || code == grpc::StatusCode::UNAVAILABLE;
    if (server_fault) {
      log_->Error("request", fields);
    } else {
      log_->Warn("request", fields);
    }
  }

  const std::string path_;
  const std::string rpc_;
  ServiceMetrics* const metrics_;
  Log* const log_;
  const std::chrono::steady_clock::time_point start_;
  std::optional<ServiceMetrics::InflightGuard> inflight_;
  std::string request_id_;
  bool recorded_ = false;
};

class RequestInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  RequestInterceptorFactory(ServiceMetrics* metrics, Log* log) : metrics_(metrics), log_(log) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new RequestInterceptor(info->method() != nullptr ? info->method() : "", metrics_, log_);
  }

 private:
  ServiceMetrics* const metrics_;
  Log* const log_;
};

}  // namespace

std::string RpcLabel(absl::string_view path) {
  absl::ConsumePrefix(&path, "/");
  absl::ConsumePrefix(&path, "kvc.v1.");
  std::string label(path);
  for (char& c : label) {
    if (c == '/') c = '.';
  }
  return label;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRequestInterceptorFactory(
    ServiceMetrics* metrics, Log* log) {
  return std::make_unique<RequestInterceptorFactory>(metrics, log);
}

}  // namespace kvc
