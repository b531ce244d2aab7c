// IEEE binary16 and bfloat16 to float32, bit-exact (every such value is a float32). Header-only and free
// of dependencies, so that torch-free readers (GGUF dequantization, the .kvc reader) can share it.
#ifndef KVC_COMPRESSOR_UTIL_HALF_H_
#define KVC_COMPRESSOR_UTIL_HALF_H_

#include <cstdint>
#include <cstring>

namespace kvc {

inline float HalfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FF;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float BFloat16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace kvc

#endif  // KVC_COMPRESSOR_UTIL_HALF_H_
