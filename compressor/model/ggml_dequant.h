// Dequantization of ggml block formats to float32, following the reference layouts of ggml.
// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K.
//
// Thread safety: pure functions; disjoint ranges may be dequantized concurrently.
#ifndef KVC_COMPRESSOR_MODEL_GGML_DEQUANT_H_
#define KVC_COMPRESSOR_MODEL_GGML_DEQUANT_H_

#include <cstdint>

#include "absl/status/status.h"
#include "compressor/model/ggml_type.h"

namespace kvc {

// Dequantizes `n_blocks` consecutive blocks of `type` from `src` into `dst`
// (n_blocks * block_elems floats). UNIMPLEMENTED for types outside the supported list.
absl::Status DequantizeBlocks(uint32_t type, const uint8_t* src, int64_t n_blocks, float* dst);


}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_GGML_DEQUANT_H_
