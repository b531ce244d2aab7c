// Re-rotation of post-RoPE keys from one position to another: k' = k·cos(Δθ) + rotate_half(k)·sin(Δθ) with
// Δ = to - from, using the model's real inv_freq (default, linear, llama3 or yarn) in float32. Because RoPE
// rotations compose, this equals computing the key at `to` directly, up to float rounding; yarn's attention
// factor is a magnitude already carried by k and is not applied again.
#ifndef KVC_COMPRESSOR_KV_REROTATE_H_
#define KVC_COMPRESSOR_KV_REROTATE_H_

#include <torch/types.h>

#include "compressor/model/rope.h"

namespace kvc {

// keys: [H, n, D] (any float dtype; math in float32, result in keys' dtype).
// from, to: [H, n] or [n] int64 positions.
torch::Tensor RerotateKeys(const torch::Tensor& keys, const torch::Tensor& from, const torch::Tensor& to,
                           const Rope& rope);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_KV_REROTATE_H_
