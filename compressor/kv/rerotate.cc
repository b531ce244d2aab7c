#include "compressor/kv/rerotate.h"

namespace kvc {

torch::Tensor RerotateKeys(const torch::Tensor& keys, const torch::Tensor& from, const torch::Tensor& to,
                           const Rope& rope) {
  torch::Tensor delta = (to.to(keys.device(), torch::kInt64) - from.to(keys.device(), torch::kInt64)).to(torch::kFloat32);
  if (delta.dim() == 1) delta = delta.unsqueeze(0);                      // [1 or H, n]
  torch::Tensor inv = rope.inv_freq_on(keys.device());                   // [D/2]
  torch::Tensor freqs = delta.unsqueeze(-1) * inv;                       // [H, n, D/2]
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  torch::Tensor k = keys.to(torch::kFloat32);
  return Rope::Apply(k, emb.cos(), emb.sin()).to(keys.scalar_type());
}

}  // namespace kvc
