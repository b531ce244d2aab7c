// Per-call bookkeeping shared by every role, as a gRPC server interceptor so that no handler can forget it:
// kvc_requests_total{rpc,code}, kvc_request_seconds{rpc} and kvc_inflight_requests, one log line per
// finished call, and a request id. The id is the client's `x-request-id` metadata when it sent one
// (printable, at most 128 bytes), else a fresh one; it is echoed in the response's initial metadata and
// in the log line so that a client's report can be matched to the server's log.
//
// Ownership: the factory borrows the metrics and the log (either may be null); they must outlive the
// grpc::Server it is installed in.
// Thread safety: one interceptor per call; the metrics and log are thread-safe.
#ifndef KVC_SERVICE_REQUEST_INTERCEPTOR_H_
#define KVC_SERVICE_REQUEST_INTERCEPTOR_H_

#include <memory>
#include <string>

#include <grpcpp/support/server_interceptor.h>

#include "absl/strings/string_view.h"
#include "service/logging.h"
#include "service/metrics.h"

namespace kvc {

inline constexpr char kRequestIdMetadata[] = "x-request-id";

// The `rpc` label of a method path: "/kvc.v1.Compressor/Compress" -> "Compressor.Compress"; paths
// outside kvc.v1 keep their service's full name ("grpc.health.v1.Health.Check").
std::string RpcLabel(absl::string_view method_path);

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRequestInterceptorFactory(
    ServiceMetrics* metrics, Log* log);

}  // namespace kvc

#endif  // KVC_SERVICE_REQUEST_INTERCEPTOR_H_
