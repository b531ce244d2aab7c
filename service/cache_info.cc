#include "service/cache_info.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace kvc {

kvc::v1::CacheDtype ToProtoDtype(KvcDtype dtype) {
  switch (dtype) {
    case KvcDtype::kF32: return kvc::v1::CACHE_DTYPE_F32;
    case KvcDtype::kBF16: return kvc::v1::CACHE_DTYPE_BF16;
    case KvcDtype::kF16: return kvc::v1::CACHE_DTYPE_F16;
    case KvcDtype::kInt8: return kvc::v1::CACHE_DTYPE_INT8;
  }
  return kvc::v1::CACHE_DTYPE_UNSPECIFIED;
}

kvc::v1::CacheCodec ToProtoCodec(KvcCodec codec) {
  switch (codec) {
    case KvcCodec::kNone: return kvc::v1::CACHE_CODEC_NONE;
    case KvcCodec::kZstd: return kvc::v1::CACHE_CODEC_ZSTD;
  }
  return kvc::v1::CACHE_CODEC_UNSPECIFIED;
}

kvc::v1::CompressionSpec CompressionSpecFromJson(const nlohmann::json& spec) {
  kvc::v1::CompressionSpec out;
  if (!spec.is_object()) return out;
  if (auto it = spec.find("method"); it != spec.end() && it->is_string()) {
    out.set_method(it->get<std::string>());
  }
  // Integers first: a whole-number ratio is still a ratio, but target_tokens is never fractional.
  if (auto it = spec.find("target_tokens"); it != spec.end() && it->is_number_integer()) {
    out.set_target_tokens(it->get<int64_t>());
  } else if (auto r = spec.find("ratio"); r != spec.end() && r->is_number()) {
    out.set_ratio(r->get<double>());
  }
  if (auto it = spec.find("options"); it != spec.end() && it->is_object()) {
    for (const auto& [name, value] : it->items()) {
      (*out.mutable_options())[name] = value.is_string() ? value.get<std::string>() : value.dump();
    }
  }
  return out;
}

kvc::v1::CacheInfo CacheInfoFromHeader(const KvcHeader& header, absl::string_view cache_id,
                                       int64_t value_bytes) {
  kvc::v1::CacheInfo info;
  info.set_cache_id(std::string(cache_id));
  const nlohmann::json& meta = header.metadata;
  if (meta.is_object()) {
    if (auto it = meta.find("model"); it != meta.end() && it->is_string()) info.set_model(it->get<std::string>());
    if (auto it = meta.find("spec"); it != meta.end()) *info.mutable_spec() = CompressionSpecFromJson(*it);
    if (auto it = meta.find("prefix_tokens"); it != meta.end() && it->is_number_unsigned()) {
      info.set_prefix_tokens(it->get<int64_t>());
    }
  }
  info.set_model_fingerprint(header.fingerprint);
  info.set_tokens_in(static_cast<int64_t>(header.tokens_in));
  info.set_tokens_out(static_cast<int64_t>(header.tokens_out));
  info.set_next_position(header.next_position);
  info.set_bytes(value_bytes);
  info.set_layers(static_cast<int32_t>(header.num_layers));
  info.set_kv_heads(static_cast<int32_t>(header.kv_heads));
  info.set_head_dim(static_cast<int32_t>(header.head_dim));
  info.set_dtype(ToProtoDtype(header.dtype));
  info.set_codec(ToProtoCodec(header.codec));
  info.set_format_version(absl::StrCat(header.version_major, ".", header.version_minor));
  return info;
}

}  // namespace kvc
