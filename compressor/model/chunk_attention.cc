#include "compressor/model/chunk_attention.h"

#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu.h>

#include <tuple>

#include "compressor/model/cpu_kernels.h"

namespace kvc {

bool CpuChunkAttentionEligible(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                               int64_t past) {
  for (const torch::Tensor* t : {&q, &K, &V}) {
    if (!t->defined() || !t->device().is_cpu() || !cpu_kernels::KernelType(t->scalar_type())) return false;
  }
  if (q.dim() != 3 || K.dim() != 3 || V.sizes() != K.sizes() || q.scalar_type() != K.scalar_type() ||
      V.scalar_type() != K.scalar_type()) {
    return false;
  }
  const int64_t H = q.size(0), n = q.size(1), Hkv = K.size(0);
  return past >= 1 && n >= 2 && Hkv > 0 && H % Hkv == 0 && K.size(1) == past + n && K.size(2) == q.size(2) &&
         q.is_contiguous();
}

torch::Tensor CpuChunkAttention(const torch::Tensor& q, const torch::Tensor& K, const torch::Tensor& V,
                                int64_t past) {
  const int64_t H = q.size(0), n = q.size(1), D = q.size(2), Hkv = K.size(0), G = H / Hkv;
  // (1) Over the cache: no mask, so the G query heads of a KV head can share one pass as G * n rows.
  auto [over_cache, lse_cache] = at::_scaled_dot_product_flash_attention_for_cpu(
      q.view({1, Hkv, G * n, D}), K.narrow(1, 0, past).unsqueeze(0), V.narrow(1, 0, past).unsqueeze(0));
  // (2) Over the chunk: causal, one KV head per query head (the chunk's keys, not the cache, are repeated).
  auto [over_chunk, lse_chunk] = at::_scaled_dot_product_flash_attention_for_cpu(
      q.unsqueeze(0), K.narrow(1, past, n).repeat_interleave(G, 0).unsqueeze(0),
      V.narrow(1, past, n).repeat_interleave(G, 0).unsqueeze(0), /*dropout_p=*/0.0, /*is_causal=*/true);
  // Each pass normalized over its own keys; over both, pass (2) weighs exp(lse2) / (exp(lse1) + exp(lse2)).
  torch::Tensor w = torch::sigmoid(lse_chunk.reshape({1, H, n}) - lse_cache.reshape({1, H, n})).unsqueeze(-1);  // [1, H, n, 1] float32
  torch::Tensor a = over_cache.reshape({1, H, n, D}).to(torch::kFloat32);
  return torch::lerp(a, over_chunk.to(torch::kFloat32), w).to(q.scalar_type());
}

}  // namespace kvc
