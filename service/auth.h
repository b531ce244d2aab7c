// Bearer-token authentication for every kvc role: the set of accepted tokens, and the gRPC hook that
// enforces it on each call.
//
// Enforcement is a grpc::AuthMetadataProcessor, not a server interceptor. gRPC 1.51's server interceptors
// cannot end a call (Hijack() is client-only), so a rejected call would still reach the handler; the
// processor runs in the server's auth filter before any handler and fails the call with the status it
// returns. The C++ API accepts a processor only on secure credentials, so tls.h attaches it to insecure
// listeners through the C core (see MakeServerCredentials).
//
// Tokens are kept only as SHA-256 digests and compared against all of them with CRYPTO_memcmp, so neither
// the position of a mismatch, nor which token matched, nor the token's length shows in the timing.
//
// Thread safety: BearerTokens is immutable after creation; Authorize and the processor may be called from
// any number of threads at once.
#ifndef KVC_SERVICE_AUTH_H_
#define KVC_SERVICE_AUTH_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/security/auth_metadata_processor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvc {

// Methods reachable without a token, as path prefixes: health probes and reflection must work for
// orchestrators that hold no token.
inline constexpr const char* kUnauthenticatedMethodPrefixes[] = {
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
};

class BearerTokens {
 public:
  // One token per line; blank lines and lines starting with '#' are skipped, whitespace around a token is
  // trimmed. NOT_FOUND for a missing file, PERMISSION_DENIED/INTERNAL if it cannot be read,
  // INVALID_ARGUMENT when it holds no token.
  static absl::StatusOr<std::unique_ptr<BearerTokens>> FromFile(const std::string& path);
  // The variable's value, comma-separated, with whitespace around each token trimmed. NOT_FOUND when the
  // variable is unset, INVALID_ARGUMENT when it holds no token.
  static absl::StatusOr<std::unique_ptr<BearerTokens>> FromEnv(const std::string& variable);
  // INVALID_ARGUMENT for an empty list or an empty token.
  static absl::StatusOr<std::unique_ptr<BearerTokens>> FromList(const std::vector<std::string>& tokens);

  // Whether `token` is one of the set. Takes the same time whichever token matches, if any.
  bool Contains(absl::string_view token) const;

  // The decision for one call. OK for a method under kUnauthenticatedMethodPrefixes; otherwise
  // `authorization` (the value of the `authorization` metadata, absent when the client sent none) must be
  // "Bearer <token>" (scheme case-insensitive) with a known token. UNAUTHENTICATED otherwise.
  absl::Status Authorize(absl::string_view method, std::optional<absl::string_view> authorization) const;

  size_t size() const { return digests_.size(); }

 private:
  explicit BearerTokens(std::vector<std::array<uint8_t, 32>> digests) : digests_(std::move(digests)) {}

  const std::vector<std::array<uint8_t, 32>> digests_;
};

// The server-side check: a processor that applies tokens->Authorize to the call's `:path` and
// `authorization` metadata. It never blocks, so gRPC runs it inline. It does not read its AuthContext
// argument, which may therefore be null (as it is on insecure listeners).
std::shared_ptr<grpc::AuthMetadataProcessor> MakeBearerTokenProcessor(std::shared_ptr<const BearerTokens> tokens);

}  // namespace kvc

#endif  // KVC_SERVICE_AUTH_H_
