// ggml tensor types as stored in GGUF files, with their block geometry.
#ifndef KVC_COMPRESSOR_MODEL_GGML_TYPE_H_
#define KVC_COMPRESSOR_MODEL_GGML_TYPE_H_

#include <cstdint>
#include <string>

namespace kvc {

// Values are the on-disk ids; do not renumber.
enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15,
  kBF16 = 30,
};

struct GgmlTypeTraits {
  const char* name;
  int64_t block_elems;  // elements per block (1 for plain float types)
  int64_t block_bytes;  // bytes per block
};

// Traits for types kvc can dequantize; nullptr otherwise (e.g. the IQ* codebook formats).
const GgmlTypeTraits* FindGgmlTypeTraits(uint32_t type);
// A readable name for any id, known or not ("IQ2_XXS", "type 99").
std::string GgmlTypeName(uint32_t type);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_GGML_TYPE_H_
