// A read-only memory map of a whole file.
//
// Ownership: the MappedFile owns the mapping; spans and tensors built over data() must not outlive it.
// Thread safety: immutable after Open, safe to read from any number of threads.
#ifndef KVC_COMPRESSOR_UTIL_MAPPED_FILE_H_
#define KVC_COMPRESSOR_UTIL_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kvc {

class MappedFile {
 public:
  // NOT_FOUND if the file does not exist, PERMISSION_DENIED / INTERNAL for other OS errors.
  // An empty file maps successfully with size() == 0.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_UTIL_MAPPED_FILE_H_
