#include "compressor/methods/scoring.h"

#include <cmath>
#include <limits>

#include "compressor/kv/rerotate.h"

namespace kvc {

torch::Tensor WindowAttention(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& valid) {
  const int64_t H = queries.size(0), w = queries.size(1), D = queries.size(2);
  const int64_t Hkv = keys.size(0), n = keys.size(1);
  torch::Tensor k = keys.repeat_interleave(H / Hkv, 0);  // [H, n, D]
  torch::Tensor logits = torch::matmul(queries, k.transpose(1, 2)) / std::sqrt(static_cast<double>(D));
  // Row i sees keys up to n - w + i.
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(queries.device());
  torch::Tensor visible = torch::arange(n, opts).unsqueeze(0) <= (torch::arange(w, opts) + (n - w)).unsqueeze(1);
  torch::Tensor hidden = visible.logical_not();  // [w, n]
  if (valid.defined()) hidden = hidden | valid.logical_not().repeat_interleave(H / Hkv, 0).unsqueeze(1);
  logits = logits.masked_fill(hidden, -std::numeric_limits<float>::infinity());
  return torch::softmax(logits.to(torch::kFloat32), -1);
}

torch::Tensor GroupMean(const torch::Tensor& per_head, int64_t kv_heads) {
  const int64_t H = per_head.size(0), n = per_head.size(1);
  return per_head.view({kv_heads, H / kv_heads, n}).mean(1);
}

torch::Tensor SelectTopK(torch::Tensor scores, int64_t k, int64_t protected_prefix) {
  const int64_t n = scores.size(1);
  k = std::min(k, n);
  if (protected_prefix > 0) {
    scores = scores.clone();
    scores.narrow(1, 0, std::min(protected_prefix, n)).fill_(std::numeric_limits<float>::infinity());
  }
  torch::Tensor idx = std::get<1>(scores.topk(k, /*dim=*/1));
  return std::get<0>(idx.sort(1));
}

void GatherLayer(KvCache& cache, int64_t layer, const torch::Tensor& idx, bool rerotate, const Rope& rope,
                 const torch::Tensor& valid) {
  const int64_t D = cache.shape().head_dim;
  torch::Tensor i = idx.to(cache.shape().device);
  torch::Tensor i3 = i.unsqueeze(-1).expand({i.size(0), i.size(1), D});
  torch::Tensor k = cache.Keys(layer).gather(1, i3);
  torch::Tensor v = cache.Values(layer).gather(1, i3);
  torch::Tensor p = cache.Positions(layer).gather(1, i);
  if (rerotate) {
    torch::Tensor to = torch::arange(i.size(1), i.options()).unsqueeze(0).expand_as(i);
    k = RerotateKeys(k, i, to, rope);
  }
  cache.Reset(layer, k, v, p, valid);
}

}  // namespace kvc
