#include "compressor/format/kv_cache_adapter.h"

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

EncodedLayer EncodeLayer(const torch::Tensor& k_in, const torch::Tensor& v_in, KvcDtype dtype) {
  EncodedLayer e;
  if (dtype != KvcDtype::kInt8) {
    e.k = k_in.to(torch::kCPU, TorchType(dtype)).contiguous();
    e.v = v_in.to(torch::kCPU, TorchType(dtype)).contiguous();
    return e;
  }
  torch::Tensor k = k_in.to(torch::kCPU, torch::kFloat32);  // [H, n, D]
  torch::Tensor v = v_in.to(torch::kCPU, torch::kFloat32);
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
  e.k = (k / ks.unsqueeze(1)).round().clamp(-127, 127).to(torch::kInt8).contiguous();
  e.v = (v / vs.unsqueeze(2)).round().clamp(-127, 127).to(torch::kInt8).contiguous();
  e.k_scales = ks.contiguous();
  e.v_scales = vs.contiguous();
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
      const int64_t len = cache.length(l);
      for (int64_t hd = 0; hd < shape.kv_heads; ++hd) h.lengths.push_back(static_cast<uint32_t>(len));
      h.tokens_out = std::max<uint64_t>(h.tokens_out, len);
      encoded.push_back(EncodeLayer(cache.Keys(l), cache.Values(l), options.dtype));
      torch::Tensor p = cache.Positions(l).to(torch::kCPU);
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
  for (uint32_t l = 0; l < h.num_layers; ++l) {
    for (uint32_t hd = 1; hd < h.kv_heads; ++hd) {
      if (h.length(l, hd) != h.length(l, 0)) {
        return absl::UnimplementedError(absl::StrCat("cache: layer ", l, " keeps different numbers of entries per head, ",
                                                     "which this runtime does not decode"));
      }
    }
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
      const int64_t n = h.length(l, 0);
      if (n == 0) continue;  // a new KvCache layer is already empty
      const KvcLayerView& view = reader->layer(l);
      torch::Tensor k = cpu(view.keys.data(), {H, n, D}, TorchType(h.dtype));
      torch::Tensor v = cpu(view.values.data(), {H, n, D}, TorchType(h.dtype));
      if (h.dtype == KvcDtype::kInt8) {
        k = k.to(torch::kFloat32) * cpu(view.key_scales.data(), {H, 1, D}, torch::kFloat32);
        v = v.to(torch::kFloat32) * cpu(view.value_scales.data(), {H, n, 1}, torch::kFloat32);
      }
      torch::Tensor p = cpu(reader->positions(l, 0).data(), {H, n}, torch::kInt32).to(torch::kInt64);
      // Append copies onto the target device and dtype, so no view into `bytes` survives this call.
      cache.Append(l, k.to(options.device, out_type), v.to(options.device, out_type), p.to(options.device));
    }
    cache.set_next_position(h.next_position);
    cache.set_key_rotation(h.keys_compacted ? KeyRotation::kCompacted : KeyRotation::kOriginal);
    cache.set_model_fingerprint(h.fingerprint);
    return DecodedKvCache{std::move(cache), h};
  });
}

}  // namespace kvc
