// grpc::Status to absl::Status for the client library. Both follow google.rpc.Code, so the code keeps its
// number and the message is kept as is; numbers outside 0..16 become UNKNOWN.
//
// This is the client's own copy of the mapping: the client depends on the wire contract only, never on
// service/ (DESIGN §2).
//
// Thread safety: pure function.
#ifndef KVC_CLIENT_CPP_GRPC_STATUS_CONVERSION_H_
#define KVC_CLIENT_CPP_GRPC_STATUS_CONVERSION_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace kvc::client_internal {

absl::Status StatusFromGrpc(const grpc::Status& status);

}  // namespace kvc::client_internal

#endif  // KVC_CLIENT_CPP_GRPC_STATUS_CONVERSION_H_
