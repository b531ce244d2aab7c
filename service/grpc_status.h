// The one place where kvc's absl::Status meets grpc::Status.
//
// Abseil and gRPC number their codes identically (both follow google.rpc.Code), so a code maps to the
// same number and the message is kept as is. Codes outside 0..16 (never produced by kvc) become UNKNOWN.
//
// Thread safety: pure functions.
#ifndef KVC_SERVICE_GRPC_STATUS_H_
#define KVC_SERVICE_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace kvc {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace kvc

#endif  // KVC_SERVICE_GRPC_STATUS_H_
