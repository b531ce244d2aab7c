// Attention of a prefill chunk that follows cached entries, on CPU: every cached entry is visible to every
// query of the chunk, and inside the chunk attention is causal.
//
// Why: one scaled_dot_product_attention call over [past + n] keys needs an explicit [n, past + n] mask, and
// LibTorch's CPU kernel then computes the whole rectangle, masked half of the chunk's square included, and
// more slowly than its causal path. Two flash-attention passes, merged by their log-sum-exps, compute only
// what is visible: (1) each KV head's query group stacked as one [G * n] block over the cached entries,
// unmasked, so the cache is read once per KV head; (2) the chunk over itself, causal.
//
// Thread safety: a pure function; LibTorch splits each pass across its intra-op threads.
#ifndef KVC_COMPRESSOR_MODEL_CHUNK_ATTENTION_H_
#define KVC_COMPRESSOR_MODEL_CHUNK_ATTENTION_H_

#include <cstdint>

#include <torch/types.h>

namespace kvc {

// q [H, n, D] (contiguous); K, V [Hkv, past + n, D] with the chunk's own keys and values last; H a multiple of
// Hkv, the heads of one KV head's group adjacent. Returns [1, H, n, D] in q's dtype: softmax(q Kᵀ / sqrt(D))
// V with query i of the chunk seeing the `past` cached entries and chunk entries 0..i.
torch::Tensor CpuChunkAttention(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                                int64_t past);

// True when CpuChunkAttention applies: CPU tensors of float32 or bfloat16, past >= 1 and n >= 2, the shapes
// above.
bool CpuChunkAttentionEligible(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                               int64_t past);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_CHUNK_ATTENTION_H_
