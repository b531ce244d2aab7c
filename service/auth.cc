#include "service/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/grpc_status.h"

namespace kvc {
namespace {

std::array<uint8_t, 32> Digest(absl::string_view token) {
  std::array<uint8_t, 32> digest;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return digest;
}

absl::StatusOr<std::unique_ptr<BearerTokens>> FromParts(const std::vector<absl::string_view>& parts,
                                                        absl::string_view source) {
  std::vector<std::string> tokens;
  for (absl::string_view part : parts) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) tokens.emplace_back(part);
  }
  if (tokens.empty()) return absl::InvalidArgumentError(absl::StrCat(source, " holds no bearer token"));
  return BearerTokens::FromList(tokens);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BearerTokens>> BearerTokens::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat("token file ", path, " does not exist"));
    if (err == EACCES) return absl::PermissionDeniedError(absl::StrCat("token file ", path, " is not readable"));
    return absl::InternalError(absl::StrCat("cannot open token file ", path, ": ", std::strerror(err)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat("cannot read token file ", path));
  const std::string content = text.str();
  std::vector<absl::string_view> lines;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    lines.push_back(line);
  }
  return FromParts(lines, absl::StrCat("token file ", path));
}

absl::StatusOr<std::unique_ptr<BearerTokens>> BearerTokens::FromEnv(const std::string& variable) {
  const char* value = std::getenv(variable.c_str());
  if (value == nullptr) return absl::NotFoundError(absl::StrCat("environment variable ", variable, " is not set"));
  std::vector<absl::string_view> parts = absl::StrSplit(value, ',');
  return FromParts(parts, absl::StrCat("environment variable ", variable));
}

absl::StatusOr<std::unique_ptr<BearerTokens>> BearerTokens::FromList(const std::vector<std::string>& tokens) {
  if (tokens.empty()) return absl::InvalidArgumentError("no bearer token configured");
  std::vector<std::array<uint8_t, 32>> digests;
  digests.reserve(tokens.size());
  for (const std::string& token : tokens) {
    if (token.empty()) return absl::InvalidArgumentError("empty bearer token");
    digests.push_back(Digest(token));
  }
  return std::unique_ptr<BearerTokens>(new BearerTokens(std::move(digests)));
}

bool BearerTokens::Contains(absl::string_view token) const {
  // Hashing first makes every comparison 32 bytes whatever the lengths; visiting every digest without an
  // early exit hides which one matched.
  const std::array<uint8_t, 32> digest = Digest(token);
  int matched = 0;
  for (const std::array<uint8_t, 32>& known : digests_) {
    matched |= CRYPTO_memcmp(known.data(), digest.data(), digest.size()) == 0 ? 1 : 0;
  }
  return matched != 0;
}

absl::Status BearerTokens::Authorize(absl::string_view method,
                                     std::optional<absl::string_view> authorization) const {
  for (const char* prefix : kUnauthenticatedMethodPrefixes) {
    if (absl::StartsWith(method, prefix)) return absl::OkStatus();
  }
  if (!authorization.has_value()) return absl::UnauthenticatedError("missing bearer token");
  absl::string_view value = absl::StripAsciiWhitespace(*authorization);
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() < kScheme.size() || !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError("missing bearer token");
  }
  const absl::string_view token = absl::StripAsciiWhitespace(value.substr(kScheme.size()));
  if (token.empty()) return absl::UnauthenticatedError("missing bearer token");
  if (!Contains(token)) return absl::UnauthenticatedError("invalid bearer token");
  return absl::OkStatus();
}

namespace {

class BearerTokenProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit BearerTokenProcessor(std::shared_ptr<const BearerTokens> tokens) : tokens_(std::move(tokens)) {}

  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* /*context*/,
                       OutputMetadata* /*consumed_auth_metadata*/,
                       OutputMetadata* /*response_metadata*/) override {
    absl::string_view method;
    if (auto it = auth_metadata.find(":path"); it != auth_metadata.end()) {
      method = absl::string_view(it->second.data(), it->second.size());
    }
    std::optional<absl::string_view> authorization;
    if (auto it = auth_metadata.find("authorization"); it != auth_metadata.end()) {
      authorization = absl::string_view(it->second.data(), it->second.size());
    }
    return ToGrpcStatus(tokens_->Authorize(method, authorization));
  }

 private:
  const std::shared_ptr<const BearerTokens> tokens_;
};

}  // namespace

std::shared_ptr<grpc::AuthMetadataProcessor> MakeBearerTokenProcessor(std::shared_ptr<const BearerTokens> tokens) {
  return std::make_shared<BearerTokenProcessor>(std::move(tokens));
}

}  // namespace kvc
