// Element types of the K/V sections of a .kvc file, and the scalar conversions a reader without LibTorch
// needs to turn them back into floats.
//
// int8 sections carry float32 scales: keys one scale per (head, channel), values one per (head, token), so
// x = q * scale. docs/kvc-format.md gives the exact layout.
#ifndef KVC_COMPRESSOR_FORMAT_KVC_DTYPE_H_
#define KVC_COMPRESSOR_FORMAT_KVC_DTYPE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compressor/util/half.h"  // HalfToFloat, BFloat16ToFloat for readers of f16/bf16 sections

namespace kvc {

enum class KvcDtype : uint8_t { kF32 = 0, kBF16 = 1, kF16 = 2, kInt8 = 3 };
enum class KvcCodec : uint8_t { kNone = 0, kZstd = 1 };

// Bytes per stored element (1 for int8; scales are extra).
int KvcDtypeSize(KvcDtype dtype);
// "f32", "bf16", "f16", "int8" / "none", "zstd".
const char* KvcDtypeName(KvcDtype dtype);
const char* KvcCodecName(KvcCodec codec);
// INVALID_ARGUMENT naming `field` for unknown names. Accepts "float32"/"bfloat16"/"float16" as aliases.
absl::StatusOr<KvcDtype> ParseKvcDtype(absl::string_view name, absl::string_view field = "dtype");
absl::StatusOr<KvcCodec> ParseKvcCodec(absl::string_view name, absl::string_view field = "codec");
bool IsValidKvcDtype(uint8_t raw);
bool IsValidKvcCodec(uint8_t raw);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_FORMAT_KVC_DTYPE_H_
