// The gRPC channel a KvcClient talks through: plaintext or TLS (optionally with a client certificate for
// mutual TLS) from PEM files, with the message size limits of ClientOptions.
//
// The PEM files are read here, so a missing file fails client creation rather than the first call.
// Their contents are not parsed: gRPC reports a bad certificate at the first handshake, as UNAVAILABLE.
//
// Thread safety: pure function of the files it reads. The channel is thread-safe.
#ifndef KVC_CLIENT_CPP_CLIENT_CHANNEL_H_
#define KVC_CLIENT_CPP_CLIENT_CHANNEL_H_

#include <memory>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "client/cpp/client_options.h"

namespace kvc {

// INVALID_ARGUMENT for an empty target, a client certificate without its key (or the reverse) or a
// message limit below 2 MiB; NOT_FOUND for a missing PEM file, PERMISSION_DENIED for one that cannot be
// read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeClientChannel(const ClientOptions& options);

}  // namespace kvc

#endif  // KVC_CLIENT_CPP_CLIENT_CHANNEL_H_
