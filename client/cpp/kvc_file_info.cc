#include "client/cpp/kvc_file_info.h"

#include <memory>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "compressor/format/kvc_reader.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

kvc::v1::CacheDtype WireDtype(KvcDtype dtype) {
  switch (dtype) {
    case KvcDtype::kF32: return kvc::v1::CACHE_DTYPE_F32;
    case KvcDtype::kBF16: return kvc::v1::CACHE_DTYPE_BF16;
    case KvcDtype::kF16: return kvc::v1::CACHE_DTYPE_F16;
    case KvcDtype::kInt8: return kvc::v1::CACHE_DTYPE_INT8;
  }
  return kvc::v1::CACHE_DTYPE_UNSPECIFIED;
}

kvc::v1::CacheCodec WireCodec(KvcCodec codec) {
  switch (codec) {
    case KvcCodec::kNone: return kvc::v1::CACHE_CODEC_NONE;
    case KvcCodec::kZstd: return kvc::v1::CACHE_CODEC_ZSTD;
  }
  return kvc::v1::CACHE_CODEC_UNSPECIFIED;
}

void FillSpec(const nlohmann::json& spec, kvc::v1::CompressionSpec* out) {
  if (!spec.is_object()) return;
  if (auto it = spec.find("method"); it != spec.end() && it->is_string()) out->set_method(it->get<std::string>());
  // target_tokens is always a whole number; a whole-number ratio is still a ratio.
  if (auto it = spec.find("target_tokens"); it != spec.end() && it->is_number_integer()) {
    out->set_target_tokens(it->get<int64_t>());
  } else if (auto r = spec.find("ratio"); r != spec.end() && r->is_number()) {
    out->set_ratio(r->get<double>());
  }
  if (auto it = spec.find("options"); it != spec.end() && it->is_object()) {
    for (const auto& [name, value] : it->items()) {
      (*out->mutable_options())[name] = value.is_string() ? value.get<std::string>() : value.dump();
    }
  }
}

}  // namespace

absl::StatusOr<kvc::v1::CacheInfo> DescribeKvcBytes(absl::string_view bytes, const std::string& cache_id,
                                                     const KvcFileInfoOptions& options) {
  KvcHeader header;
  if (options.verify_sections) {
    KVC_ASSIGN_OR_RETURN(std::unique_ptr<KvcReader> reader, KvcReader::Open(bytes));
    header = reader->header();
  } else {
    KVC_ASSIGN_OR_RETURN(header, KvcReader::ReadHeader(bytes));
  }
  kvc::v1::CacheInfo info;
  info.set_cache_id(cache_id);
  const nlohmann::json& meta = header.metadata;
  if (meta.is_object()) {
    if (auto it = meta.find("model"); it != meta.end() && it->is_string()) info.set_model(it->get<std::string>());
    if (auto it = meta.find("spec"); it != meta.end()) FillSpec(*it, info.mutable_spec());
    if (auto it = meta.find("prefix_tokens"); it != meta.end() && it->is_number_unsigned()) {
      info.set_prefix_tokens(it->get<int64_t>());
    }
  }
  info.set_model_fingerprint(header.fingerprint);
  info.set_tokens_in(static_cast<int64_t>(header.tokens_in));
  info.set_tokens_out(static_cast<int64_t>(header.tokens_out));
  info.set_next_position(header.next_position);
  info.set_bytes(static_cast<int64_t>(bytes.size()));
  info.set_layers(static_cast<int32_t>(header.num_layers));
  info.set_kv_heads(static_cast<int32_t>(header.kv_heads));
  info.set_head_dim(static_cast<int32_t>(header.head_dim));
  info.set_dtype(WireDtype(header.dtype));
  info.set_codec(WireCodec(header.codec));
  info.set_format_version(absl::StrCat(header.version_major, ".", header.version_minor));
  return info;
}

}  // namespace kvc
