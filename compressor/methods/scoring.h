// Building blocks shared by the attention-based methods (Finch, SnapKV) and the selection step of all of them.
#ifndef KVC_COMPRESSOR_METHODS_SCORING_H_
#define KVC_COMPRESSOR_METHODS_SCORING_H_

#include <torch/types.h>

#include "compressor/kv/kv_cache.h"
#include "compressor/model/rope.h"

namespace kvc {

// Softmax attention of window queries over keys, float32, as the model computes it (scaled dot product),
// causal inside the window: queries [H, w, D] (post-RoPE) are the last w tokens, whose own keys are the
// last w of keys [Hkv, n, D]. Returns [H, w, n]. valid: undefined, or [Hkv, n] bool, false for padding of a
// ragged cache (kv_cache.h), which gets no attention.
torch::Tensor WindowAttention(const torch::Tensor& queries, const torch::Tensor& keys,
                              const torch::Tensor& valid = {});

// [H, n] -> [Hkv, n]: mean over the query heads of each GQA group.
torch::Tensor GroupMean(const torch::Tensor& per_head, int64_t kv_heads);

// Indices of the k highest scores per row of scores [Hkv, n], ascending (sequence order), on the scores'
// device, so that selecting from a CUDA cache needs no round trip through the host. Entries
// [0, protected_prefix) are always among them.
torch::Tensor SelectTopK(torch::Tensor scores, int64_t k, int64_t protected_prefix);

// Keeps the entries idx [Hkv, k] of `layer`. With rerotate, keys move from rotary position = cache index
// (the invariant of re-rotated caches) to contiguous positions 0..k-1. valid: undefined, or [Hkv, k] bool
// marking the slots that are padding (false), for heads that keep fewer than k.
void GatherLayer(KvCache& cache, int64_t layer, const torch::Tensor& idx, bool rerotate, const Rope& rope,
                 const torch::Tensor& valid = {});

}  // namespace kvc

#endif  // KVC_COMPRESSOR_METHODS_SCORING_H_
