#include "client/cpp/testing/test_certs.h"

#include <stdlib.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace kvc::testing {
namespace {

absl::StatusOr<TestCerts> Mint() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/kvc_client_certs_XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  const std::string d = pattern;
  std::ofstream(d + "/server.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
  std::ofstream(d + "/client.ext") << "extendedKeyUsage=clientAuth\n";
  const std::string newkey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string cmd = absl::StrCat(
      "cd ", d, " && (openssl req -x509 ", newkey, " -keyout ca.key -out ca.pem -days 2 -subj /CN=kvc-test-ca",
      " && openssl req ", newkey, " -keyout server.key -out server.csr -subj /CN=localhost",
      " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2",
      " -extfile server.ext",
      " && openssl req ", newkey, " -keyout client.key -out client.csr -subj /CN=kvc-test-client",
      " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2",
      " -extfile client.ext) >/dev/null 2>&1");
  if (std::system(cmd.c_str()) != 0) return absl::InternalError(absl::StrCat("openssl failed: ", cmd));
  return TestCerts{d + "/ca.pem", d + "/server.pem", d + "/server.key", d + "/client.pem", d + "/client.key"};
}

}  // namespace

absl::StatusOr<TestCerts> TestCertificates() {
  static const auto* certs = new absl::StatusOr<TestCerts>(Mint());
  return *certs;
}

}  // namespace kvc::testing
