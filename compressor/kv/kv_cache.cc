#include "compressor/kv/kv_cache.h"

#include <algorithm>

namespace kvc {

KvCache::KvCache(const KvCacheShape& shape) : shape_(shape), layers_(shape.num_layers) {}

KvCache KvCache::Clone() const {
  c10::InferenceMode guard;
  KvCache out(shape_);
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    // Append allocates the copy's own storage.
    if (length(l) > 0) out.Append(l, Keys(l), Values(l), Positions(l), Valid(l));
  }
  out.next_position_ = next_position_;
  out.peak_length_ = peak_length_;
  out.key_rotation_ = key_rotation_;
  out.model_fingerprint_ = model_fingerprint_;
  return out;
}

torch::Tensor KvCache::Keys(int64_t layer) const {
  const Layer& l = layers_[layer];
  if (!l.k.defined()) {
    return torch::empty({shape_.kv_heads, 0, shape_.head_dim},
                        torch::TensorOptions().dtype(shape_.dtype).device(shape_.device));
  }
  return l.k.narrow(1, 0, l.length);
}

torch::Tensor KvCache::Values(int64_t layer) const {
  const Layer& l = layers_[layer];
  if (!l.v.defined()) {
    return torch::empty({shape_.kv_heads, 0, shape_.head_dim},
                        torch::TensorOptions().dtype(shape_.dtype).device(shape_.device));
  }
  return l.v.narrow(1, 0, l.length);
}

torch::Tensor KvCache::Positions(int64_t layer) const {
  const Layer& l = layers_[layer];
  if (!l.positions.defined()) {
    return torch::empty({shape_.kv_heads, 0}, torch::TensorOptions().dtype(torch::kInt64).device(shape_.device));
  }
  return l.positions.narrow(1, 0, l.length);
}

int64_t KvCache::length() const {
  int64_t longest = 0;
  for (const Layer& l : layers_) longest = std::max(longest, l.length);
  return longest;
}

bool KvCache::ragged() const {
  for (const Layer& l : layers_) {
    if (l.valid.defined() || l.length != layers_[0].length) return true;
  }
  return false;
}

torch::Tensor KvCache::Valid(int64_t layer) const {
  const Layer& l = layers_[layer];
  return l.valid.defined() ? l.valid.narrow(1, 0, l.length) : torch::Tensor();
}

std::vector<int64_t> KvCache::HeadLengths(int64_t layer) const {
  torch::Tensor valid = Valid(layer);
  if (!valid.defined()) return std::vector<int64_t>(shape_.kv_heads, layers_[layer].length);
  torch::Tensor counts = valid.sum(1).to(torch::kCPU, torch::kInt64).contiguous();
  return std::vector<int64_t>(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
}

int64_t KvCache::Entries() const {
  int64_t total = 0;
  for (int64_t l = 0; l < num_layers(); ++l) {
    for (int64_t n : HeadLengths(l)) total += n;
  }
  return total;
}

torch::Tensor KvCache::RotaryPositions(int64_t layer) const {
  if (key_rotation_ == KeyRotation::kOriginal) return Positions(layer);
  const int64_t len = length(layer);
  return torch::arange(len, torch::TensorOptions().dtype(torch::kInt64).device(shape_.device))
      .unsqueeze(0)
      .expand({shape_.kv_heads, len});
}

void KvCache::Reserve(Layer& l, int64_t capacity) {
  c10::InferenceMode guard;  // storage is made of inference tensors; keep every update inside the mode
  int64_t current = l.k.defined() ? l.k.size(1) : 0;
  if (capacity <= current) return;
  int64_t grown = std::max<int64_t>({capacity, current * 2, 64});
  auto opts = torch::TensorOptions().dtype(shape_.dtype).device(shape_.device);
  torch::Tensor k = torch::empty({shape_.kv_heads, grown, shape_.head_dim}, opts);
  torch::Tensor v = torch::empty({shape_.kv_heads, grown, shape_.head_dim}, opts);
  torch::Tensor p = torch::empty({shape_.kv_heads, grown}, opts.dtype(torch::kInt64));
  if (l.length > 0) {
    k.narrow(1, 0, l.length).copy_(l.k.narrow(1, 0, l.length));
    v.narrow(1, 0, l.length).copy_(l.v.narrow(1, 0, l.length));
    p.narrow(1, 0, l.length).copy_(l.positions.narrow(1, 0, l.length));
  }
  if (l.valid.defined()) {
    torch::Tensor valid = torch::empty({shape_.kv_heads, grown}, opts.dtype(torch::kBool));
    if (l.length > 0) valid.narrow(1, 0, l.length).copy_(l.valid.narrow(1, 0, l.length));
    l.valid = valid;
  }
  l.k = k;
  l.v = v;
  l.positions = p;
}

void KvCache::Append(int64_t layer, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& positions, const torch::Tensor& valid) {
  c10::InferenceMode guard;
  Layer& l = layers_[layer];
  int64_t n = k.size(1);
  const bool padded = valid.defined() && !valid.all().item<bool>();
  if (padded && !l.valid.defined()) {
    // The layer's first padding: every slot so far is real.
    auto opts = torch::TensorOptions().dtype(torch::kBool).device(shape_.device);
    l.valid = torch::ones({shape_.kv_heads, l.k.defined() ? l.k.size(1) : 0}, opts);
  }
  Reserve(l, l.length + n);
  l.k.narrow(1, l.length, n).copy_(k);
  l.v.narrow(1, l.length, n).copy_(v);
  torch::Tensor p = positions.dim() == 1 ? positions.unsqueeze(0).expand({shape_.kv_heads, n}) : positions;
  l.positions.narrow(1, l.length, n).copy_(p);
  if (l.valid.defined()) {
    torch::Tensor slots = l.valid.narrow(1, l.length, n);
    if (padded) {
      slots.copy_(valid);
      l.positions.narrow(1, l.length, n).masked_fill_(slots.logical_not(), -1);
    } else {
      slots.fill_(true);
    }
  }
  l.length += n;
  peak_length_ = std::max(peak_length_, l.length);
}

void KvCache::Reset(int64_t layer, const torch::Tensor& k, const torch::Tensor& v,
                    const torch::Tensor& positions, const torch::Tensor& valid) {
  layers_[layer].length = 0;
  layers_[layer].valid = torch::Tensor();
  Append(layer, k, v, positions, valid);
}

void KvCache::SetPositions(int64_t begin, const torch::Tensor& positions) {
  c10::InferenceMode guard;  // storage is made of inference tensors; keep every update inside the mode
  torch::Tensor p = positions.to(shape_.device, torch::kInt64).unsqueeze(0).expand({shape_.kv_heads, positions.size(0)});
  for (Layer& l : layers_) l.positions.narrow(1, begin, positions.size(0)).copy_(p);
}

void KvCache::Truncate(int64_t len) {
  for (int64_t l = 0; l < num_layers(); ++l) TruncateLayer(l, len);
}

void KvCache::TruncateLayer(int64_t layer, int64_t len) {
  Layer& l = layers_[layer];
  l.length = std::min(l.length, len);
  if (l.valid.defined() && l.valid.narrow(1, 0, l.length).all().item<bool>()) l.valid = torch::Tensor();
}

int64_t KvCache::Bytes() const {
  int64_t total = 0;
  int64_t elem = static_cast<int64_t>(c10::elementSize(shape_.dtype));
  for (const Layer& l : layers_) total += 2 * l.length * shape_.kv_heads * shape_.head_dim * elem;
  return total;
}

}  // namespace kvc
