#include "service/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpcpp/security/server_credentials.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(what, " ", path, " does not exist"));
    return absl::InvalidArgumentError(absl::StrCat("cannot open ", what, " ", path, ": ", std::strerror(err)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", what, " ", path));
  return text.str();
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Bio MemBio(const std::string& pem) { return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

// The first certificate of a PEM bundle; INVALID_ARGUMENT when there is none.
absl::StatusOr<X509Ptr> ParseCertificate(const std::string& pem, const std::string& path, const char* what) {
  Bio bio = MemBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " holds no PEM certificate"));
  return cert;
}

absl::StatusOr<Pkey> ParsePrivateKey(const std::string& pem, const std::string& path) {
  Bio bio = MemBio(pem);
  // An empty passphrase callback: an encrypted key fails here rather than prompting on the terminal.
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("TLS key ", path, " holds no unencrypted PEM private key"));
  }
  return key;
}

// Runs a C++ AuthMetadataProcessor from the C core. It is called inline on the transport thread, which is
// why only non-blocking processors are accepted for plaintext listeners.
void ProcessInline(void* state, grpc_auth_context* /*context*/, const grpc_metadata* md, size_t num_md,
                   grpc_process_auth_metadata_done_cb cb, void* user_data) {
  auto* processor = static_cast<std::shared_ptr<grpc::AuthMetadataProcessor>*>(state);
  grpc::AuthMetadataProcessor::InputMetadata input;
  for (size_t i = 0; i < num_md; ++i) {
    input.emplace(grpc::string_ref(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].key)),
                                   GRPC_SLICE_LENGTH(md[i].key)),
                  grpc::string_ref(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].value)),
                                   GRPC_SLICE_LENGTH(md[i].value)));
  }
  grpc::AuthMetadataProcessor::OutputMetadata consumed, response;
  const grpc::Status status = (*processor)->Process(input, nullptr, &consumed, &response);
  cb(user_data, nullptr, 0, nullptr, 0, static_cast<grpc_status_code>(status.error_code()),
     status.ok() ? nullptr : status.error_message().c_str());
}

// Plaintext credentials that run an AuthMetadataProcessor. grpc::InsecureServerCredentials() asserts in
// SetAuthMetadataProcessor, but the core's insecure credentials take a processor like any other, and the
// server auth filter runs for every listener added with credentials.
class InsecureServerCredentialsWithAuth final : public grpc::ServerCredentials {
 public:
  explicit InsecureServerCredentialsWithAuth(std::shared_ptr<grpc::AuthMetadataProcessor> processor)
      : processor_(std::move(processor)) {}

  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>& processor) override {
    processor_ = processor;
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    grpc_server_credentials* creds = grpc_insecure_server_credentials_create();
    grpc_auth_metadata_processor c_processor;
    c_processor.process = ProcessInline;
    c_processor.destroy = [](void* state) { delete static_cast<std::shared_ptr<grpc::AuthMetadataProcessor>*>(state); };
    c_processor.state = new std::shared_ptr<grpc::AuthMetadataProcessor>(processor_);
    grpc_server_credentials_set_auth_metadata_processor(creds, c_processor);
    const int port = grpc_server_add_http2_port(server, addr.c_str(), creds);
    grpc_server_credentials_release(creds);
    return port;
  }

  std::shared_ptr<grpc::AuthMetadataProcessor> processor_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options, std::shared_ptr<grpc::AuthMetadataProcessor> auth) {
  if (options.cert_file.empty() && options.key_file.empty()) {
    if (!options.client_ca_file.empty()) {
      return absl::InvalidArgumentError("a client CA (mutual TLS) needs a server certificate and key");
    }
    if (auth == nullptr) return grpc::InsecureServerCredentials();
    if (auth->IsBlocking()) {
      return absl::InvalidArgumentError("plaintext listeners run the auth processor inline; it must not block");
    }
    return std::shared_ptr<grpc::ServerCredentials>(std::make_shared<InsecureServerCredentialsWithAuth>(auth));
  }
  if (options.cert_file.empty()) return absl::InvalidArgumentError("a TLS key was given without a certificate");
  if (options.key_file.empty()) return absl::InvalidArgumentError("a TLS certificate was given without a key");

  KVC_ASSIGN_OR_RETURN(std::string cert_pem, ReadPemFile(options.cert_file, "TLS certificate"));
  KVC_ASSIGN_OR_RETURN(std::string key_pem, ReadPemFile(options.key_file, "TLS key"));
  KVC_ASSIGN_OR_RETURN(X509Ptr cert, ParseCertificate(cert_pem, options.cert_file, "TLS certificate"));
  KVC_ASSIGN_OR_RETURN(Pkey key, ParsePrivateKey(key_pem, options.key_file));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key ", options.key_file, " does not match certificate ", options.cert_file));
  }

  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({key_pem, cert_pem});
  if (!options.client_ca_file.empty()) {
    KVC_ASSIGN_OR_RETURN(std::string ca_pem, ReadPemFile(options.client_ca_file, "client CA"));
    KVC_RETURN_IF_ERROR(ParseCertificate(ca_pem, options.client_ca_file, "client CA").status());
    ssl.pem_root_certs = std::move(ca_pem);
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::SslServerCredentials(ssl);
  if (auth != nullptr) creds->SetAuthMetadataProcessor(auth);
  return creds;
}

}  // namespace kvc
