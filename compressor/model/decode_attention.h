// Decode attention on CPU: one new token's queries over a layer's cached keys and values, reading only the
// cache's real entries.
//
// Why: a ragged cache (head-adaptive or global budgets) pads each head of a layer to the layer's fullest
// head, and a batched product reads every padding slot, so a cache that kept 1/8 of the entries but one
// whole head decoded as slowly as the full cache. Here a padding slot costs a byte of the mask, not a key
// and a value. The loops are compiled for AVX-512, AVX2 and plain x86-64, chosen when the program loads.
//
// Thread safety: a pure function; the cache is split across LibTorch's intra-op threads.
#ifndef KVC_COMPRESSOR_MODEL_DECODE_ATTENTION_H_
#define KVC_COMPRESSOR_MODEL_DECODE_ATTENTION_H_

#include <torch/types.h>

namespace kvc {

// q [H, D]; K, V [Hkv, L, D] (each row of D contiguous, any other strides); valid [Hkv, L] bool, or
// undefined when every slot is real. The H query heads form Hkv adjacent groups, group h reading KV head h.
// Returns softmax(scale * q Kᵀ over the valid slots) V, [H, D] in q's dtype. Scores, softmax and sums are
// float32, whatever the cache's dtype. A head needs at least one valid slot (else its row is NaN).
torch::Tensor CpuDecodeAttention(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                                 const torch::Tensor& valid, double scale);

// True when CpuDecodeAttention accepts the arguments: CPU tensors of float32 or bfloat16 (K and V of one
// dtype), the shapes above with L >= 1, contiguous rows, a bool mask.
bool CpuDecodeAttentionEligible(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                                const torch::Tensor& valid);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_DECODE_ATTENTION_H_
