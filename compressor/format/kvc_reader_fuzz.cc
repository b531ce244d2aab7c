// libFuzzer target: any byte string given to the .kvc reader yields a status or a valid reader, never a
// crash, a hang or an out-of-bounds read. Checksums are skipped half of the time so that the fuzzer can
// reach the layout checks behind them.
#include <cstddef>
#include <cstdint>

#include "compressor/format/kvc_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvc::KvcReadOptions options;
  options.verify_checksums = size % 2 == 0;
  options.max_decoded_bytes = uint64_t{64} << 20;
  auto reader = kvc::KvcReader::Open(absl::string_view(reinterpret_cast<const char*>(data), size), options);
  if (!reader.ok()) return 0;
  // Touch every view, so that a bad offset shows up under ASan.
  const kvc::KvcHeader& h = (*reader)->header();
  uint64_t sum = 0;
  for (int32_t p : (*reader)->positions()) sum += static_cast<uint32_t>(p);
  for (uint32_t l = 0; l < h.num_layers; ++l) {
    const kvc::KvcLayerView& v = (*reader)->layer(l);
    for (char c : v.keys) sum += static_cast<uint8_t>(c);
    for (char c : v.values) sum += static_cast<uint8_t>(c);
    for (float f : v.key_scales) sum += f > 0;
    for (float f : v.value_scales) sum += f > 0;
    for (uint32_t hd = 0; hd < h.kv_heads; ++hd) sum += (*reader)->positions(l, hd).size();
  }
  return sum == 42 ? 0 : 0;
}
