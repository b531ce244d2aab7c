#include "compressor/model/gguf_file.h"

#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

// Value type ids of GGUF metadata.
enum : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8,
  kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// Limits that keep a corrupted count from turning into a huge allocation before the size check fails.
constexpr uint64_t kMaxDims = 4;
constexpr uint64_t kMaxStringBytes = 1 << 24;

// Sequential little-endian reader that never reads past the end of the buffer.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }

  absl::Status Truncated(const char* what) const {
    return absl::DataLossError(absl::StrCat("GGUF file ", path_, " is truncated or corrupt: ", what,
                                            " at byte ", pos_, " runs past the end (", size_,
                                            " bytes)"));
  }

  template <typename T>
  absl::StatusOr<T> Read(const char* what) {
    if (size_ - pos_ < sizeof(T)) return Truncated(what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  absl::StatusOr<std::string> ReadString(const char* what) {
    KVC_ASSIGN_OR_RETURN(uint64_t n, Read<uint64_t>(what));
    if (n > kMaxStringBytes || size_ - pos_ < n) return Truncated(what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  // Checks that `count` elements of at least `min_elem_bytes` each can still fit in the file.
  absl::Status CheckCount(uint64_t count, uint64_t min_elem_bytes, const char* what) const {
    if (min_elem_bytes > 0 && count > (size_ - pos_) / min_elem_bytes) return Truncated(what);
    return absl::OkStatus();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

uint64_t MinBytesOf(uint32_t type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: case kString: return 8;
    default: return 12;  // a nested array header
  }
}

absl::Status ReadScalarInto(Reader& r, uint32_t type, GgufValue& v, const std::string& key) {
  auto push_int = [&](auto x) -> absl::Status {
    if (!x.ok()) return x.status();
    v.kind = GgufValue::Kind::kInt;
    v.ints.push_back(static_cast<int64_t>(*x));
    return absl::OkStatus();
  };
  switch (type) {
    case kU8: return push_int(r.Read<uint8_t>("metadata value"));
    case kI8: return push_int(r.Read<int8_t>("metadata value"));
    case kU16: return push_int(r.Read<uint16_t>("metadata value"));
    case kI16: return push_int(r.Read<int16_t>("metadata value"));
    case kU32: return push_int(r.Read<uint32_t>("metadata value"));
    case kI32: return push_int(r.Read<int32_t>("metadata value"));
    case kI64: return push_int(r.Read<int64_t>("metadata value"));
    case kU64: {
      KVC_ASSIGN_OR_RETURN(uint64_t x, r.Read<uint64_t>("metadata value"));
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError(absl::StrCat("GGUF metadata ", key, " overflows int64"));
      }
      v.kind = GgufValue::Kind::kInt;
      v.ints.push_back(static_cast<int64_t>(x));
      return absl::OkStatus();
    }
    case kBool: {
      KVC_ASSIGN_OR_RETURN(uint8_t x, r.Read<uint8_t>("metadata value"));
      v.kind = GgufValue::Kind::kBool;
      v.ints.push_back(x != 0);
      return absl::OkStatus();
    }
    case kF32: {
      KVC_ASSIGN_OR_RETURN(float x, r.Read<float>("metadata value"));
      v.kind = GgufValue::Kind::kFloat;
      v.floats.push_back(x);
      return absl::OkStatus();
    }
    case kF64: {
      KVC_ASSIGN_OR_RETURN(double x, r.Read<double>("metadata value"));
      v.kind = GgufValue::Kind::kFloat;
      v.floats.push_back(x);
      return absl::OkStatus();
    }
    case kString: {
      KVC_ASSIGN_OR_RETURN(std::string s, r.ReadString("metadata string"));
      v.kind = GgufValue::Kind::kString;
      v.strings.push_back(std::move(s));
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF metadata ", key, " has unknown value type ", type));
  }
}

}  // namespace

int64_t GgufTensorInfo::NumElements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

std::vector<int64_t> GgufTensorInfo::TorchShape() const { return {ne.rbegin(), ne.rend()}; }

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  auto gguf = std::unique_ptr<GgufFile>(new GgufFile());
  KVC_ASSIGN_OR_RETURN(gguf->file_, MappedFile::Open(path));
  KVC_RETURN_IF_ERROR(gguf->Parse());
  return gguf;
}

absl::Status GgufFile::Parse() {
  const std::string& path = file_->path();
  Reader r(file_->data(), file_->size(), path);
  if (file_->size() < 4 || std::memcmp(file_->data(), "GGUF", 4) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a GGUF file (bad magic)"));
  }
  KVC_RETURN_IF_ERROR(r.Read<uint32_t>("magic").status());
  KVC_ASSIGN_OR_RETURN(version_, r.Read<uint32_t>("version"));
  if (version_ != 2 && version_ != 3) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": GGUF version ", version_, " is not supported (need 2 or 3)"));
  }
  KVC_ASSIGN_OR_RETURN(uint64_t n_tensors, r.Read<uint64_t>("tensor count"));
  KVC_ASSIGN_OR_RETURN(uint64_t n_kv, r.Read<uint64_t>("metadata count"));
  KVC_RETURN_IF_ERROR(r.CheckCount(n_kv, 12, "metadata table"));
  KVC_RETURN_IF_ERROR(r.CheckCount(n_tensors, 24, "tensor table"));

  for (uint64_t i = 0; i < n_kv; ++i) {
    KVC_ASSIGN_OR_RETURN(std::string key, r.ReadString("metadata key"));
    KVC_ASSIGN_OR_RETURN(uint32_t type, r.Read<uint32_t>("metadata type"));
    GgufValue v;
    if (type == kArray) {
      KVC_ASSIGN_OR_RETURN(uint32_t elem_type, r.Read<uint32_t>("array type"));
      KVC_ASSIGN_OR_RETURN(uint64_t count, r.Read<uint64_t>("array length"));
      if (elem_type == kArray) {
        return absl::UnimplementedError(absl::StrCat(path, ": nested array in metadata ", key));
      }
      KVC_RETURN_IF_ERROR(r.CheckCount(count, MinBytesOf(elem_type), "metadata array"));
      v.is_array = true;
      for (uint64_t j = 0; j < count; ++j) KVC_RETURN_IF_ERROR(ReadScalarInto(r, elem_type, v, key));
      if (count == 0) {
        v.kind = elem_type == kString ? GgufValue::Kind::kString
                 : (elem_type == kF32 || elem_type == kF64) ? GgufValue::Kind::kFloat
                                                             : GgufValue::Kind::kInt;
      }
    } else {
      KVC_RETURN_IF_ERROR(ReadScalarInto(r, type, v, key));
    }
    metadata_[key] = std::move(v);
  }

  uint64_t alignment = 32;
  if (const GgufValue* a = Find("general.alignment")) {
    if (a->kind != GgufValue::Kind::kInt || a->ints.empty() || a->ints[0] <= 0 ||
        (a->ints[0] & (a->ints[0] - 1)) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": general.alignment must be a power of 2"));
    }
    alignment = static_cast<uint64_t>(a->ints[0]);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    KVC_ASSIGN_OR_RETURN(t.name, r.ReadString("tensor name"));
    KVC_ASSIGN_OR_RETURN(uint32_t n_dims, r.Read<uint32_t>("tensor rank"));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", t.name, " has unsupported rank ", n_dims));
    }
    for (uint32_t d = 0; d < n_dims; ++d) {
      KVC_ASSIGN_OR_RETURN(uint64_t dim, r.Read<uint64_t>("tensor dimension"));
      if (dim == 0 || dim > (uint64_t{1} << 40)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor ", t.name, " has invalid dimension ", dim));
      }
      t.ne.push_back(static_cast<int64_t>(dim));
    }
    KVC_ASSIGN_OR_RETURN(uint32_t type, r.Read<uint32_t>("tensor type"));
    t.type = static_cast<GgmlType>(type);
    KVC_ASSIGN_OR_RETURN(t.offset, r.Read<uint64_t>("tensor offset"));
    if (tensor_index_.count(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": duplicate tensor ", t.name));
    }
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  uint64_t file_size = file_->size();
  for (GgufTensorInfo& t : tensors_) {
    const GgmlTypeTraits* traits = FindGgmlTypeTraits(static_cast<uint32_t>(t.type));
    if (traits == nullptr) continue;  // reported when someone asks for the tensor's values
    int64_t n = t.NumElements();
    if (t.ne[0] % traits->block_elems != 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", t.name, " row of ", t.ne[0],
                                                     " elements is not a multiple of the ",
                                                     traits->name, " block size"));
    }
    t.nbytes = static_cast<uint64_t>(n / traits->block_elems * traits->block_bytes);
    if (t.offset > file_size || data_start > file_size - t.offset ||
        t.nbytes > file_size - data_start - t.offset) {
      return absl::DataLossError(absl::StrCat("GGUF file ", path, " is truncated or corrupt: tensor ",
                                              t.name, " (", t.nbytes, " bytes at offset ", t.offset,
                                              ") lies past the end of the file (", file_size,
                                              " bytes)"));
    }
    t.data = file_->data() + data_start + t.offset;
  }
  return absl::OkStatus();
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

absl::StatusOr<int64_t> GgufFile::GetInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat("GGUF metadata ", key, " is missing"));
  if (v->is_array || v->ints.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF metadata ", key, " is not an integer"));
  }
  return v->ints[0];
}

absl::StatusOr<double> GgufFile::GetFloat(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat("GGUF metadata ", key, " is missing"));
  if (!v->is_array && !v->floats.empty()) return v->floats[0];
  if (!v->is_array && !v->ints.empty()) return static_cast<double>(v->ints[0]);
  return absl::InvalidArgumentError(absl::StrCat("GGUF metadata ", key, " is not a number"));
}

absl::StatusOr<std::string> GgufFile::GetString(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat("GGUF metadata ", key, " is missing"));
  if (v->is_array || v->strings.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF metadata ", key, " is not a string"));
  }
  return v->strings[0];
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace kvc
