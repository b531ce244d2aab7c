// The server's listening credentials: plaintext, TLS or mutual TLS from PEM files, optionally with an
// AuthMetadataProcessor (auth.h's bearer-token check) run on every call.
//
// The PEM files are read and parsed with OpenSSL here, so a missing, unreadable or malformed file, or a key
// that does not belong to the certificate, stops the server at startup instead of failing the first
// handshake.
//
// Ownership: the returned credentials share ownership of the processor.
// Thread safety: MakeServerCredentials is a pure function of the files it reads.
#ifndef KVC_SERVICE_TLS_H_
#define KVC_SERVICE_TLS_H_

#include <memory>
#include <string>

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace kvc {

struct TlsOptions {
  // PEM certificate chain of the server, leaf first. Empty with key_file empty: plaintext.
  std::string cert_file;
  // PEM private key of cert_file's leaf.
  std::string key_file;
  // PEM CA bundle. When set, clients must present a certificate that chains to it (mutual TLS).
  std::string client_ca_file;
};

// None of the files set: plaintext. cert_file and key_file: TLS. All three: mutual TLS, where the handshake
// fails for a client with no certificate or one the CA did not sign.
// INVALID_ARGUMENT when only one of cert_file and key_file is set, when client_ca_file is set without them,
// or when a file is not valid PEM of its kind or the key does not match the certificate; NOT_FOUND for a
// missing file.
//
// `auth`, when not null, is run before every call. gRPC's C++ API refuses a processor on plaintext
// credentials (it asserts), so plaintext listeners with `auth` are built from the C core's insecure
// credentials, which run the same server auth filter; the processor then gets a null AuthContext.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options, std::shared_ptr<grpc::AuthMetadataProcessor> auth = nullptr);

}  // namespace kvc

#endif  // KVC_SERVICE_TLS_H_
