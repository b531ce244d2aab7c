// Incremental SHA-256 (OpenSSL's implementation) with a lowercase hex digest.
//
// Thread safety: one Sha256 object per thread; distinct objects are independent.
#ifndef KVC_COMPRESSOR_UTIL_SHA256_H_
#define KVC_COMPRESSOR_UTIL_SHA256_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace kvc {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(absl::string_view s) { Update(s.data(), s.size()); }
  // Appends a length prefix first so that concatenated fields cannot be confused ("ab"+"c" vs "a"+"bc").
  void UpdateField(absl::string_view s);
  // Finishes the hash; the object must not be updated afterwards.
  std::array<uint8_t, 32> Final();
  std::string FinalHex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string Sha256Hex(absl::string_view data);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_UTIL_SHA256_H_
