#include "compressor/kv/compose.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "compressor/kv/rerotate.h"
#include "compressor/util/torch_status.h"

namespace kvc {
namespace {

std::string ShortFingerprint(const std::string& f) {
  return f.empty() ? std::string("(none)") : f.substr(0, 12);
}

// FAILED_PRECONDITION naming the first attribute in which caches[i] differs from caches[0].
absl::Status CheckCompatible(const KvCache& first, const KvCache& other, size_t i) {
  const KvCacheShape& a = first.shape();
  const KvCacheShape& b = other.shape();
  auto mismatch = [&](absl::string_view what, const std::string& got, const std::string& want) {
    return absl::FailedPreconditionError(absl::StrCat("caches[", i, "]: ", what, " ", got, " differs from caches[0]'s ",
                                                      want, "; only caches of the same model compose"));
  };
  if (b.num_layers != a.num_layers) {
    return mismatch("layer count", std::to_string(b.num_layers), std::to_string(a.num_layers));
  }
  if (b.kv_heads != a.kv_heads) return mismatch("kv_heads", std::to_string(b.kv_heads), std::to_string(a.kv_heads));
  if (b.head_dim != a.head_dim) return mismatch("head_dim", std::to_string(b.head_dim), std::to_string(a.head_dim));
  if (b.dtype != a.dtype) {
    return mismatch("dtype", std::string(c10::toString(b.dtype)), std::string(c10::toString(a.dtype)));
  }
  if (b.device != a.device) return mismatch("device", b.device.str(), a.device.str());
  if (other.model_fingerprint() != first.model_fingerprint()) {
    return mismatch("model fingerprint", ShortFingerprint(other.model_fingerprint()),
                    ShortFingerprint(first.model_fingerprint()));
  }
  return absl::OkStatus();
}

absl::StatusOr<KvCache> ComposeImpl(const std::vector<ComposePart>& parts, const Rope& rope) {
  c10::InferenceMode guard;
  const KvCache& first = *parts[0].cache;
  const KvCacheShape& shape = first.shape();
  KvCache out(shape);
  int64_t longest = 0;
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    std::vector<torch::Tensor> keys, values, positions, valid;
    // A mask only when some part of this layer has padding, so dense compositions allocate nothing extra.
    bool padded = false;
    for (const ComposePart& part : parts) padded = padded || part.cache->Valid(l).defined();
    int64_t base = 0;
    for (const ComposePart& part : parts) {
      const KvCache* c = part.cache;
      const int64_t skip = part.skip_leading;
      const int64_t len = c->length(l) - skip;
      if (len == 0) continue;
      torch::Tensor from = c->RotaryPositions(l).narrow(1, skip, len);  // [kv_heads, len]
      torch::Tensor to =
          torch::arange(base, base + len, torch::TensorOptions().dtype(torch::kInt64).device(shape.device));
      torch::Tensor k = c->Keys(l).narrow(1, skip, len);
      // Keys already rotated to exactly these positions (a kCompacted part whose kept entries keep their
      // index, e.g. the first one) are copied as is, so that composing one compacted cache is bit-exact.
      bool in_place = c->key_rotation() == KeyRotation::kCompacted && base == skip;
      keys.push_back(in_place ? k : RerotateKeys(k, from, to, rope));
      values.push_back(c->Values(l).narrow(1, skip, len));
      positions.push_back(c->Positions(l).narrow(1, skip, len));
      if (padded) {
        torch::Tensor v = c->Valid(l);
        valid.push_back(v.defined() ? v.narrow(1, skip, len)
                                    : torch::ones({shape.kv_heads, len},
                                                  torch::TensorOptions().dtype(torch::kBool).device(shape.device)));
      }
      base += len;
    }
    // A ragged part keeps its padding in place: every slot keeps its index, so the re-rotation above holds.
    if (!keys.empty()) {
      out.Reset(l, torch::cat(keys, 1), torch::cat(values, 1), torch::cat(positions, 1),
                padded ? torch::cat(valid, 1) : torch::Tensor());
    }
    longest = std::max(longest, base);
  }
  out.set_key_rotation(KeyRotation::kCompacted);
  out.set_next_position(longest);
  out.set_model_fingerprint(first.model_fingerprint());
  return out;
}

}  // namespace

absl::StatusOr<KvCache> ComposeCaches(const std::vector<const KvCache*>& caches, const Rope& rope) {
  std::vector<ComposePart> parts;
  parts.reserve(caches.size());
  for (const KvCache* c : caches) parts.push_back(ComposePart{c, 0});
  return ComposeCaches(parts, rope);
}

absl::StatusOr<KvCache> ComposeCaches(const std::vector<ComposePart>& parts, const Rope& rope) {
  if (parts.empty()) return absl::InvalidArgumentError("ComposeCaches: no caches to compose");
  for (size_t i = 0; i < parts.size(); ++i) {
    const KvCache* c = parts[i].cache;
    if (c == nullptr) return absl::InvalidArgumentError(absl::StrCat("ComposeCaches: caches[", i, "] is null"));
    absl::Status s = CheckCompatible(*parts[0].cache, *c, i);
    if (!s.ok()) return s;
    const int64_t skip = parts[i].skip_leading;
    if (skip < 0) {
      return absl::InvalidArgumentError(absl::StrCat("ComposeCaches: caches[", i, "]: skip_leading ", skip,
                                                     " is negative"));
    }
    for (int64_t l = 0; l < c->num_layers(); ++l) {
      if (skip > c->length(l)) {
        return absl::InvalidArgumentError(absl::StrCat("ComposeCaches: caches[", i, "]: skip_leading ", skip,
                                                       " is past the ", c->length(l), " entries of layer ", l));
      }
    }
  }
  return CatchTorch([&] { return ComposeImpl(parts, rope); });
}

absl::StatusOr<KvCache> CopyCache(const KvCache& cache, torch::ScalarType dtype, torch::Device device) {
  return CatchTorch([&]() -> absl::StatusOr<KvCache> {
    c10::InferenceMode guard;
    KvCacheShape shape = cache.shape();
    shape.dtype = dtype;
    shape.device = device;
    KvCache out(shape);
    for (int64_t l = 0; l < shape.num_layers; ++l) {
      if (cache.length(l) == 0) continue;
      // Append allocates this cache's own storage and converts dtype/device on the copy.
      out.Append(l, cache.Keys(l), cache.Values(l), cache.Positions(l), cache.Valid(l));
    }
    out.set_next_position(cache.next_position());
    out.set_key_rotation(cache.key_rotation());
    out.set_model_fingerprint(cache.model_fingerprint());
    return out;
  });
}

absl::StatusOr<KvCache> CopyCache(const KvCache& cache) {
  return CatchTorch([&]() -> absl::StatusOr<KvCache> { return cache.Clone(); });
}

}  // namespace kvc
