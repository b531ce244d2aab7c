#include "compressor/format/kv_cache_adapter.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "compressor/format/kvc_writer.h"
#include "compressor/util/status_macros.h"
#include "compressor/util/torch_status.h"

namespace kvc {
namespace {

torch::ScalarType TorchType(KvcDtype d) {
  switch (d) {
    case KvcDtype::kF32: return torch::kFloat32;
    case KvcDtype::kBF16: return torch::kBFloat16;
    case KvcDtype::kF16: return torch::kFloat16;
    case KvcDtype::kInt8: return torch::kInt8;
  }
  return torch::kFloat32;
}

absl::string_view TensorBytes(const torch::Tensor& t) {
  return absl::string_view(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
}


// One layer's tensors converted for storage; they own the memory the KvcLayerData views point into.
struct EncodedLayer {
  torch::Tensor k, v, k_scales, v_scales;
};

// k_in, v_in: [H, n, D]; valid: undefined or [H, n] bool (the real entries, which alone are stored, head by
// head: the sections hold each head's entries in cache order).
EncodedLayer EncodeLayer(const torch::Tensor& k_in, const torch::Tensor& v_in, const torch::Tensor& valid_in,
                         KvcDtype dtype) {
  EncodedLayer e;
  const torch::Tensor valid = valid_in.defined() ? valid_in.to(torch::kCPU) : torch::Tensor();
  auto stored = [&](const torch::Tensor& t) {  // [H, n, ...] -> the real entries, head-major
    return (valid.defined() ? t.index({valid}) : t).contiguous();
  };
  if (dtype != KvcDtype::kInt8) {
    e.k = stored(k_in.to(torch::kCPU, TorchType(dtype)));
    e.v = stored(v_in.to(torch::kCPU, TorchType(dtype)));
    return e;
  }
  torch::Tensor k = k_in.to(torch::kCPU, torch::kFloat32);  // [H, n, D]
  torch::Tensor v = v_in.to(torch::kCPU, torch::kFloat32);
  // Padding must not widen a head's key scales.
  if (valid.defined()) k = k * valid.unsqueeze(2);
  // Per (head, channel) for keys, per (head, token) for values; an all-zero row gets scale 1 (any works).
  if (k.size(1) == 0) {
    e.k = k.to(torch::kInt8);
    e.v = v.to(torch::kInt8);
    e.k_scales = torch::ones({k.size(0), k.size(2)}, torch::kFloat32);
    e.v_scales = torch::ones({k.size(0), 0}, torch::kFloat32);
    return e;
  }
  torch::Tensor ks = k.abs().amax(/*dim=*/1) / 127.0;  // [H, D]
  ks = torch::where(ks > 0, ks, torch::ones_like(ks));
  torch::Tensor vs = v.abs().amax(/*dim=*/2) / 127.0;  // [H, n]
  vs = torch::where(vs > 0, vs, torch::ones_like(vs));
  e.k = stored((k / ks.unsqueeze(1)).round().clamp(-127, 127).to(torch::kInt8));
  e.v = stored((v / vs.unsqueeze(2)).round().clamp(-127, 127).to(torch::kInt8));
  e.k_scales = ks.contiguous();
  e.v_scales = stored(vs);
  return e;
}

}  // namespace

nlohmann::json RopeMetadata(const ModelConfig& c) {
  nlohmann::json j = {{"type", RopeTypeName(c.rope_scaling.type)}, {"theta", c.rope_theta}};
  if (c.rope_scaling.type != RopeScalingType::kNone) {
    j["factor"] = c.rope_scaling.factor;
    j["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
  }
  if (c.rope_scaling.type == RopeScalingType::kLlama3) {
    j["low_freq_factor"] = c.rope_scaling.low_freq_factor;
    j["high_freq_factor"] = c.rope_scaling.high_freq_factor;
  }
  if (c.rope_scaling.type == RopeScalingType::kYarn) {
    j["beta_fast"] = c.rope_scaling.beta_fast;
    j["beta_slow"] = c.rope_scaling.beta_slow;
  }
  return j;
}

absl::StatusOr<std::string> EncodeKvCache(const KvCache& cache, const KvcProvenance& prov,
                                          const KvcEncodeOptions& options) {
  if (cache.model_fingerprint().empty()) {
    return absl::InvalidArgumentError("cache: no model fingerprint; only caches made by a model can be stored");
  }
  return CatchTorch([&]() -> absl::StatusOr<std::string> {
    c10::InferenceMode guard;
    const KvCacheShape& shape = cache.shape();
    KvcHeader h;
    h.num_layers = static_cast<uint32_t>(shape.num_layers);
    h.kv_heads = static_cast<uint32_t>(shape.kv_heads);
    h.head_dim = static_cast<uint32_t>(shape.head_dim);
    h.dtype = options.dtype;
    h.codec = options.codec;
    h.keys_compacted = cache.key_rotation() == KeyRotation::kCompacted;
    h.tokens_in = prov.tokens_in;
    h.next_position = cache.next_position();
    h.fingerprint = cache.model_fingerprint();
    h.metadata = {{"model", prov.model_name},
                  {"prefix_tokens", prov.prefix_tokens},
                  {"rope", prov.rope},
                  {"spec", prov.spec}};
    std::vector<EncodedLayer> encoded;
    std::vector<torch::Tensor> positions;
    for (int64_t l = 0; l < shape.num_layers; ++l) {
      for (int64_t len : cache.HeadLengths(l)) {
        h.lengths.push_back(static_cast<uint32_t>(len));
        h.tokens_out = std::max<uint64_t>(h.tokens_out, len);
      }
      const torch::Tensor valid = cache.Valid(l);
      encoded.push_back(EncodeLayer(cache.Keys(l), cache.Values(l), valid, options.dtype));
      torch::Tensor p = cache.Positions(l).to(torch::kCPU);
      if (valid.defined()) p = p.index({valid.to(torch::kCPU)});
      if (p.numel() > 0 && p.max().item<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return absl::OutOfRangeError("cache: an original position does not fit in 31 bits");
      }
      positions.push_back(p.to(torch::kInt32).reshape({-1}));
    }
    torch::Tensor all_positions = torch::cat(positions).contiguous();
    std::vector<KvcLayerData> layers;
    for (const EncodedLayer& e : encoded) {
      KvcLayerData d;
      d.keys = TensorBytes(e.k);
      d.values = TensorBytes(e.v);
      if (e.k_scales.defined()) {
        d.key_scales = absl::Span<const float>(e.k_scales.data_ptr<float>(), e.k_scales.numel());
        d.value_scales = absl::Span<const float>(e.v_scales.data_ptr<float>(), e.v_scales.numel());
      }
      layers.push_back(d);
    }
    return SerializeKvc(h, absl::Span<const int32_t>(all_positions.data_ptr<int32_t>(), all_positions.numel()),
                        layers, KvcWriteOptions{options.zstd_level});
  });
}

absl::StatusOr<DecodedKvCache> DecodeKvCache(absl::string_view bytes, const KvcDecodeOptions& options) {
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<KvcReader> reader, KvcReader::Open(bytes, options.read));
  const KvcHeader& h = reader->header();
  if (options.expected_fingerprint && *options.expected_fingerprint != h.fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat("cache was made by model ", h.fingerprint.substr(0, 16),
                                                      "…, this server runs ", options.expected_fingerprint->substr(0, 16),
                                                      "…: a cache only loads into the model that made it"));
  }
  const torch::ScalarType out_type =
      options.dtype.value_or(h.dtype == KvcDtype::kInt8 ? torch::kFloat32 : TorchType(h.dtype));
  return CatchTorch([&]() -> absl::StatusOr<DecodedKvCache> {
    c10::InferenceMode guard;
    const int64_t H = h.kv_heads, D = h.head_dim;
    KvCache cache(KvCacheShape{h.num_layers, H, D, out_type, options.device});
    auto cpu = [](const void* p, torch::IntArrayRef shape, torch::ScalarType t) {
      return torch::from_blob(const_cast<void*>(p), shape, torch::TensorOptions().dtype(t));
    };
    for (uint32_t l = 0; l < h.num_layers; ++l) {
      std::vector<int64_t> lengths(H);
      for (int64_t hd = 0; hd < H; ++hd) lengths[hd] = h.length(l, static_cast<uint32_t>(hd));
      const int64_t total = std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
      const int64_t n = *std::max_element(lengths.begin(), lengths.end());
      if (n == 0) continue;  // a new KvCache layer is already empty
      const KvcLayerView& view = reader->layer(l);
      torch::Tensor k = cpu(view.keys.data(), {total, D}, TorchType(h.dtype));
      torch::Tensor v = cpu(view.values.data(), {total, D}, TorchType(h.dtype));
      torch::Tensor p = cpu(reader->positions(l, 0).data(), {total}, torch::kInt32).to(torch::kInt64);
      // Each head's entries first, padding after them up to the layer's longest head.
      torch::Tensor valid = torch::arange(n).unsqueeze(0) < torch::tensor(lengths).unsqueeze(1);  // [H, n]
      if (h.dtype == KvcDtype::kInt8) {
        torch::Tensor head_of = torch::repeat_interleave(torch::tensor(lengths));  // [total]
        k = k.to(torch::kFloat32) * cpu(view.key_scales.data(), {H, D}, torch::kFloat32).index_select(0, head_of);
        v = v.to(torch::kFloat32) * cpu(view.value_scales.data(), {total, 1}, torch::kFloat32);
      }
      auto padded = [&](const torch::Tensor& flat, torch::IntArrayRef shape) {
        torch::Tensor out = torch::zeros(shape, flat.options());
        out.index_put_({valid}, flat);
        return out;
      };
      torch::Tensor pk = padded(k, {H, n, D}), pv = padded(v, {H, n, D});
      torch::Tensor pp = padded(p, {H, n});
      const bool dense = total == H * n;
      // Append copies onto the target device and dtype, so no view into `bytes` survives this call.
      cache.Append(l, pk.to(options.device, out_type), pv.to(options.device, out_type), pp.to(options.device),
                   dense ? torch::Tensor() : valid.to(options.device));
    }
    cache.set_next_position(h.next_position);
    cache.set_key_rotation(h.keys_compacted ? KeyRotation::kCompacted : KeyRotation::kOriginal);
    cache.set_model_fingerprint(h.fingerprint);
    return DecodedKvCache{std::move(cache), h};
  });
}

}  // namespace kvc
