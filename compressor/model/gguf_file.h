// A parsed GGUF (v2/v3) file: typed metadata and tensor descriptors over a memory map.
//
// Every length, count and offset is checked against the file size while parsing, so a truncated or
// corrupted file yields DATA_LOSS / INVALID_ARGUMENT instead of an out-of-bounds read.
//
// Ownership: GgufFile owns the MappedFile; GgufTensorInfo::data points into it and lives as long as the
// GgufFile. Thread safety: immutable after Open; concurrent reads are safe.
#ifndef KVC_COMPRESSOR_MODEL_GGUF_FILE_H_
#define KVC_COMPRESSOR_MODEL_GGUF_FILE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compressor/model/ggml_type.h"
#include "compressor/util/mapped_file.h"

namespace kvc {

// One metadata value. Scalars use the first element of the matching vector; arrays use all of them.
struct GgufValue {
  enum class Kind { kInt, kFloat, kBool, kString };
  Kind kind = Kind::kInt;
  bool is_array = false;
  std::vector<int64_t> ints;  // all integer types and bools (uint64 values above INT64_MAX are rejected)
  std::vector<double> floats;
  std::vector<std::string> strings;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;    // ggml order: ne[0] is the contiguous (innermost) dimension
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;        // relative to the data section
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;        // 0 when the type is unknown to kvc (size cannot be computed)

  int64_t NumElements() const;
  // Torch order (outermost first), i.e. ne reversed: a [out, in] matrix has ne = {in, out}.
  std::vector<int64_t> TorchShape() const;
};

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  uint32_t version() const { return version_; }
  const std::string& path() const { return file_->path(); }
  const MappedFile& file() const { return *file_; }

  bool Has(const std::string& key) const { return metadata_.count(key) > 0; }
  const GgufValue* Find(const std::string& key) const;
  // Typed getters: NOT_FOUND when missing, INVALID_ARGUMENT when the stored type does not fit.
  absl::StatusOr<int64_t> GetInt(const std::string& key) const;
  absl::StatusOr<double> GetFloat(const std::string& key) const;  // accepts integer values too
  absl::StatusOr<std::string> GetString(const std::string& key) const;
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(const std::string& name) const;

 private:
  GgufFile() = default;
  absl::Status Parse();

  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_GGUF_FILE_H_
