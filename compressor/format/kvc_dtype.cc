#include "compressor/format/kvc_dtype.h"

#include "absl/strings/str_cat.h"

namespace kvc {

int KvcDtypeSize(KvcDtype dtype) {
  switch (dtype) {
    case KvcDtype::kF32: return 4;
    case KvcDtype::kBF16:
    case KvcDtype::kF16: return 2;
    case KvcDtype::kInt8: return 1;
  }
  return 0;
}

const char* KvcDtypeName(KvcDtype dtype) {
  switch (dtype) {
    case KvcDtype::kF32: return "f32";
    case KvcDtype::kBF16: return "bf16";
    case KvcDtype::kF16: return "f16";
    case KvcDtype::kInt8: return "int8";
  }
  return "?";
}

const char* KvcCodecName(KvcCodec codec) {
  switch (codec) {
    case KvcCodec::kNone: return "none";
    case KvcCodec::kZstd: return "zstd";
  }
  return "?";
}

absl::StatusOr<KvcDtype> ParseKvcDtype(absl::string_view name, absl::string_view field) {
  if (name == "f32" || name == "float32") return KvcDtype::kF32;
  if (name == "bf16" || name == "bfloat16") return KvcDtype::kBF16;
  if (name == "f16" || name == "float16") return KvcDtype::kF16;
  if (name == "int8") return KvcDtype::kInt8;
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": unknown cache dtype \"", name, "\" (expected f32, bf16, f16 or int8)"));
}

absl::StatusOr<KvcCodec> ParseKvcCodec(absl::string_view name, absl::string_view field) {
  if (name == "none") return KvcCodec::kNone;
  if (name == "zstd") return KvcCodec::kZstd;
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown codec \"", name, "\" (expected none or zstd)"));
}

bool IsValidKvcDtype(uint8_t raw) { return raw <= static_cast<uint8_t>(KvcDtype::kInt8); }
bool IsValidKvcCodec(uint8_t raw) { return raw <= static_cast<uint8_t>(KvcCodec::kZstd); }

}  // namespace kvc
