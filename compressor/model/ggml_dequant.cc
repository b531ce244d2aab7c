#include "compressor/model/ggml_dequant.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "compressor/util/half.h"

namespace kvc {
namespace {

constexpr int kQK = 32;    // elements per block of the legacy formats
constexpr int kQK_K = 256; // elements per super-block of the k-quants

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
float LoadHalf(const uint8_t* p) { return HalfToFloat(LoadU16(p)); }
uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void DequantQ4_0(const uint8_t* b, float* y) {
  float d = LoadHalf(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = ((qs[j] & 0x0F) - 8) * d;
    y[j + kQK / 2] = ((qs[j] >> 4) - 8) * d;
  }
}

void DequantQ4_1(const uint8_t* b, float* y) {
  float d = LoadHalf(b), m = LoadHalf(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = (qs[j] & 0x0F) * d + m;
    y[j + kQK / 2] = (qs[j] >> 4) * d + m;
  }
}

void DequantQ5_0(const uint8_t* b, float* y) {
  float d = LoadHalf(b);
  uint32_t qh = LoadU32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    int xh0 = ((qh >> j) << 4) & 0x10;
    int xh1 = (qh >> (j + 12)) & 0x10;
    y[j] = (((qs[j] & 0x0F) | xh0) - 16) * d;
    y[j + kQK / 2] = (((qs[j] >> 4) | xh1) - 16) * d;
  }
}

void DequantQ5_1(const uint8_t* b, float* y) {
  float d = LoadHalf(b), m = LoadHalf(b + 2);
  uint32_t qh = LoadU32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    int xh0 = ((qh >> j) << 4) & 0x10;
    int xh1 = (qh >> (j + 12)) & 0x10;
    y[j] = ((qs[j] & 0x0F) | xh0) * d + m;
    y[j + kQK / 2] = ((qs[j] >> 4) | xh1) * d + m;
  }
}

void DequantQ8_0(const uint8_t* b, float* y) {
  float d = LoadHalf(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < kQK; ++j) y[j] = qs[j] * d;
}

void DequantQ8_1(const uint8_t* b, float* y) {
  float d = LoadHalf(b);  // b + 2 holds d * sum(qs), which dequantization does not need
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
  for (int j = 0; j < kQK; ++j) y[j] = qs[j] * d;
}

void DequantQ2_K(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  float d = LoadHalf(b + 80), dmin = LoadHalf(b + 82);
  int is = 0;
  for (int n = 0; n < kQK_K; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        uint8_t sc = scales[is++];
        float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
      }
      shift += 2;
    }
    q += 32;
  }
}

void DequantQ3_K(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  float d_all = LoadHalf(b + 108);
  // The 16 6-bit scales are packed into 12 bytes; unpack them the way ggml does.
  constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
  uint32_t aux[4];
  std::memcpy(aux, b + 96, 12);
  uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  const int8_t* scales = reinterpret_cast<const int8_t*>(aux);
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < kQK_K; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        float dl = d_all * (scales[is++] - 32);
        for (int l = 0; l < 16; ++l) {
          int idx = l + 16 * half;
          *y++ = dl * (((q[idx] >> shift) & 3) - ((hm[idx] & m) ? 0 : 4));
        }
      }
      shift += 2;
      m <<= 1;
    }
    q += 32;
  }
}

void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void DequantQ4_K(const uint8_t* b, float* y) {
  float d = LoadHalf(b), dmin = LoadHalf(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  int is = 0;
  for (int j = 0; j < kQK_K; j += 64) {
    uint8_t sc, m;
    ScaleMinK4(is, scales, &sc, &m);
    float d1 = d * sc, m1 = dmin * m;
    ScaleMinK4(is + 1, scales, &sc, &m);
    float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

void DequantQ5_K(const uint8_t* b, float* y) {
  float d = LoadHalf(b), dmin = LoadHalf(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < kQK_K; j += 64) {
    uint8_t sc, m;
    ScaleMinK4(is, scales, &sc, &m);
    float d1 = d * sc, m1 = dmin * m;
    ScaleMinK4(is + 1, scales, &sc, &m);
    float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 <<= 2;
    u2 <<= 2;
  }
}

void DequantQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  float d = LoadHalf(b + 208);
  for (int n = 0; n < kQK_K; n += 128) {
    for (int l = 0; l < 32; ++l) {
      int is = l / 16;
      int q1 = static_cast<int8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      int q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      int q3 = static_cast<int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

void DequantQ8_K(const uint8_t* b, float* y) {
  float d;
  std::memcpy(&d, b, 4);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
  for (int j = 0; j < kQK_K; ++j) y[j] = d * qs[j];
}

}  // namespace


absl::Status DequantizeBlocks(uint32_t type, const uint8_t* src, int64_t n_blocks, float* dst) {
  const GgmlTypeTraits* traits = FindGgmlTypeTraits(type);
  if (traits == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("ggml type ", GgmlTypeName(type), " is not supported by kvc"));
  }
  void (*block_fn)(const uint8_t*, float*) = nullptr;
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n_blocks * 4);
      return absl::OkStatus();
    case GgmlType::kF16:
      for (int64_t i = 0; i < n_blocks; ++i) dst[i] = LoadHalf(src + 2 * i);
      return absl::OkStatus();
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n_blocks; ++i) {
        uint32_t bits = static_cast<uint32_t>(LoadU16(src + 2 * i)) << 16;
        std::memcpy(&dst[i], &bits, 4);
      }
      return absl::OkStatus();
    case GgmlType::kQ4_0: block_fn = DequantQ4_0; break;
    case GgmlType::kQ4_1: block_fn = DequantQ4_1; break;
    case GgmlType::kQ5_0: block_fn = DequantQ5_0; break;
    case GgmlType::kQ5_1: block_fn = DequantQ5_1; break;
    case GgmlType::kQ8_0: block_fn = DequantQ8_0; break;
    case GgmlType::kQ8_1: block_fn = DequantQ8_1; break;
    case GgmlType::kQ2_K: block_fn = DequantQ2_K; break;
    case GgmlType::kQ3_K: block_fn = DequantQ3_K; break;
    case GgmlType::kQ4_K: block_fn = DequantQ4_K; break;
    case GgmlType::kQ5_K: block_fn = DequantQ5_K; break;
    case GgmlType::kQ6_K: block_fn = DequantQ6_K; break;
    case GgmlType::kQ8_K: block_fn = DequantQ8_K; break;
  }
  for (int64_t i = 0; i < n_blocks; ++i) {
    block_fn(src + i * traits->block_bytes, dst + i * traits->block_elems);
  }
  return absl::OkStatus();
}

}  // namespace kvc
