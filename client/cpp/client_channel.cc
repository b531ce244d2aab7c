#include "client/cpp/client_channel.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

// Two 1 MiB cache chunks plus framing must fit, or GetCache and PutCache could not work at all.
constexpr int kMinMessageBytes = 2 << 20;

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const char* field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string message = absl::StrCat(field, ": cannot open ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (contents.str().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": ", path, " is empty"));
  return contents.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(const ClientOptions& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("tls_cert_file, tls_key_file: give both for mutual TLS, or neither");
  }
  const bool tls = options.use_tls || !options.tls_root_ca_file.empty() || !options.tls_cert_file.empty();
  if (!tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_root_ca_file.empty()) {
    KVC_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(options.tls_root_ca_file, "tls_root_ca_file"));
  }
  if (!options.tls_cert_file.empty()) {
    KVC_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile(options.tls_cert_file, "tls_cert_file"));
    KVC_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(options.tls_key_file, "tls_key_file"));
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeClientChannel(const ClientOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("target: empty");
  if (options.max_message_bytes < kMinMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat("max_message_bytes: must be >= ", kMinMessageBytes));
  }
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials, MakeCredentials(options));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetUserAgentPrefix("kvc-client");
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  return grpc::CreateCustomChannel(options.target, credentials, args);
}

}  // namespace kvc
