// Throwaway certificates for TLS tests, minted with the openssl command line: a CA, a server certificate
// for localhost and 127.0.0.1, and a client certificate for mutual TLS, all P-256.
//
// Thread safety: TestCertificates() mints once per process (a function-local static).
#ifndef KVC_CLIENT_CPP_TESTING_TEST_CERTS_H_
#define KVC_CLIENT_CPP_TESTING_TEST_CERTS_H_

#include <string>

#include "absl/status/statusor.h"

namespace kvc::testing {

struct TestCerts {
  std::string ca;           // PEM file of the CA
  std::string server_cert;  // signed by ca, for DNS:localhost and IP:127.0.0.1
  std::string server_key;
  std::string client_cert;  // signed by ca, for client authentication
  std::string client_key;
};

// INTERNAL when openssl is missing or fails.
absl::StatusOr<TestCerts> TestCertificates();

}  // namespace kvc::testing

#endif  // KVC_CLIENT_CPP_TESTING_TEST_CERTS_H_
