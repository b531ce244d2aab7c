#include "compressor/format/kvc_header.h"

namespace kvc {

uint64_t KvcHeader::LayerEntries(uint32_t layer) const {
  uint64_t n = 0;
  for (uint32_t h = 0; h < kv_heads; ++h) n += length(layer, h);
  return n;
}

uint64_t KvcHeader::TotalEntries() const {
  uint64_t n = 0;
  for (uint32_t len : lengths) n += len;
  return n;
}

uint64_t KvcPositionsBytes(const KvcHeader& h) { return h.TotalEntries() * sizeof(int32_t); }

uint64_t KvcKeyScaleCount(const KvcHeader& h, uint32_t layer) {
  return h.dtype == KvcDtype::kInt8 ? static_cast<uint64_t>(h.kv_heads) * h.head_dim : 0;
}

uint64_t KvcValueScaleCount(const KvcHeader& h, uint32_t layer) {
  return h.dtype == KvcDtype::kInt8 ? h.LayerEntries(layer) : 0;
}

uint64_t KvcKeysBytes(const KvcHeader& h, uint32_t layer) {
  return KvcKeyScaleCount(h, layer) * sizeof(float) + h.LayerEntries(layer) * h.head_dim * KvcDtypeSize(h.dtype);
}

uint64_t KvcValuesBytes(const KvcHeader& h, uint32_t layer) {
  return KvcValueScaleCount(h, layer) * sizeof(float) + h.LayerEntries(layer) * h.head_dim * KvcDtypeSize(h.dtype);
}

}  // namespace kvc
