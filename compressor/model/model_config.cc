#include "compressor/model/model_config.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "compressor/model/gguf_file.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

using json = nlohmann::json;

bool SupportedArchitecture(const std::string& arch) {
  return arch == "llama" || arch == "mistral" || arch == "qwen2";
}

absl::Status UnsupportedArchitecture(const std::string& arch) {
  return absl::UnimplementedError(absl::StrCat(
      "unsupported model architecture '", arch, "' (kvc runs llama, mistral and qwen2 models)"));
}


absl::StatusOr<RopeScalingType> ParseRopeType(const std::string& s) {
  if (s.empty() || s == "default" || s == "none") return RopeScalingType::kNone;
  if (s == "linear") return RopeScalingType::kLinear;
  if (s == "llama3") return RopeScalingType::kLlama3;
  if (s == "yarn") return RopeScalingType::kYarn;
  return absl::UnimplementedError(absl::StrCat("unsupported rope scaling type '", s, "'"));
}

template <typename T>
absl::StatusOr<T> JsonGet(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json field ", key, ": ", e.what()));
  }
}

template <typename T>
absl::StatusOr<T> JsonRequire(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat("config.json is missing ", key));
  }
  return JsonGet<T>(j, key, T{});
}

}  // namespace

absl::Status ModelConfig::Validate() const {
  auto positive = [](int64_t v, const char* name) -> absl::Status {
    if (v <= 0) return absl::InvalidArgumentError(absl::StrCat("model config: ", name, " must be > 0, got ", v));
    return absl::OkStatus();
  };
  KVC_RETURN_IF_ERROR(positive(num_layers, "num_layers"));
  KVC_RETURN_IF_ERROR(positive(num_heads, "num_heads"));
  KVC_RETURN_IF_ERROR(positive(num_kv_heads, "num_kv_heads"));
  KVC_RETURN_IF_ERROR(positive(head_dim, "head_dim"));
  KVC_RETURN_IF_ERROR(positive(hidden_size, "hidden_size"));
  KVC_RETURN_IF_ERROR(positive(intermediate_size, "intermediate_size"));
  KVC_RETURN_IF_ERROR(positive(vocab_size, "vocab_size"));
  KVC_RETURN_IF_ERROR(positive(max_position_embeddings, "max_position_embeddings"));
  if (num_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model config: num_heads ", num_heads,
                                                   " is not a multiple of num_kv_heads ", num_kv_heads));
  }
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model config: head_dim ", head_dim, " must be even"));
  }
  if (!(rms_norm_eps > 0) || !(rope_theta > 0)) {
    return absl::InvalidArgumentError("model config: rms_norm_eps and rope_theta must be > 0");
  }
  if (rope_scaling.type != RopeScalingType::kNone && !(rope_scaling.factor > 0)) {
    return absl::InvalidArgumentError("model config: rope_scaling.factor must be > 0");
  }
  if ((rope_scaling.type == RopeScalingType::kLlama3 || rope_scaling.type == RopeScalingType::kYarn) &&
      rope_scaling.original_max_position_embeddings <= 0) {
    return absl::InvalidArgumentError(
        "model config: rope_scaling.original_max_position_embeddings must be > 0");
  }
  return absl::OkStatus();
}

std::string ModelConfig::CanonicalString() const {
  const RopeScaling& r = rope_scaling;
  return absl::StrFormat(
      "arch=%s;layers=%d;heads=%d;kv_heads=%d;head_dim=%d;hidden=%d;ffn=%d;vocab=%d;max_pos=%d;"
      "window=%d;eps=%.9g;theta=%.9g;rope=%s,%.9g,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%d;tied=%d;"
      "bias=%d",
      architecture, num_layers, num_heads, num_kv_heads, head_dim, hidden_size, intermediate_size,
      vocab_size, max_position_embeddings, sliding_window, rms_norm_eps, rope_theta,
      RopeTypeName(r.type), r.factor, r.original_max_position_embeddings, r.low_freq_factor,
      r.high_freq_factor, r.beta_fast, r.beta_slow, r.mscale, r.mscale_all_dim, r.attention_factor,
      r.truncate ? 1 : 0, tie_word_embeddings ? 1 : 0, attention_bias ? 1 : 0);
}

absl::StatusOr<ModelConfig> ModelConfigFromHfJson(absl::string_view json_text) {
  json j = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("config.json is not a valid JSON object");
  }
  ModelConfig c;
  KVC_ASSIGN_OR_RETURN(c.architecture, JsonGet<std::string>(j, "model_type", ""));
  if (!SupportedArchitecture(c.architecture)) return UnsupportedArchitecture(c.architecture);
  KVC_ASSIGN_OR_RETURN(c.name, JsonGet<std::string>(j, "_name_or_path", c.architecture));
  KVC_ASSIGN_OR_RETURN(c.num_layers, JsonRequire<int64_t>(j, "num_hidden_layers"));
  KVC_ASSIGN_OR_RETURN(c.num_heads, JsonRequire<int64_t>(j, "num_attention_heads"));
  KVC_ASSIGN_OR_RETURN(c.num_kv_heads, JsonGet<int64_t>(j, "num_key_value_heads", c.num_heads));
  KVC_ASSIGN_OR_RETURN(c.hidden_size, JsonRequire<int64_t>(j, "hidden_size"));
  KVC_ASSIGN_OR_RETURN(c.intermediate_size, JsonRequire<int64_t>(j, "intermediate_size"));
  KVC_ASSIGN_OR_RETURN(c.vocab_size, JsonRequire<int64_t>(j, "vocab_size"));
  KVC_ASSIGN_OR_RETURN(c.max_position_embeddings, JsonGet<int64_t>(j, "max_position_embeddings", 2048));
  KVC_ASSIGN_OR_RETURN(c.rms_norm_eps, JsonGet<double>(j, "rms_norm_eps", 1e-6));
  KVC_ASSIGN_OR_RETURN(c.tie_word_embeddings, JsonGet<bool>(j, "tie_word_embeddings", false));
  int64_t default_head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  KVC_ASSIGN_OR_RETURN(c.head_dim, JsonGet<int64_t>(j, "head_dim", default_head_dim));
  KVC_ASSIGN_OR_RETURN(c.attention_bias,
                       JsonGet<bool>(j, "attention_bias", c.architecture == "qwen2"));
  KVC_ASSIGN_OR_RETURN(bool mlp_bias, JsonGet<bool>(j, "mlp_bias", false));
  if (mlp_bias) return absl::UnimplementedError("config.json: mlp_bias=true is not supported");
  bool use_window = c.architecture == "mistral";
  if (c.architecture == "qwen2") {
    KVC_ASSIGN_OR_RETURN(use_window, JsonGet<bool>(j, "use_sliding_window", false));
  }
  if (use_window) {
    KVC_ASSIGN_OR_RETURN(c.sliding_window, JsonGet<int64_t>(j, "sliding_window", 0));
  }
  KVC_ASSIGN_OR_RETURN(c.bos_token_id, JsonGet<int64_t>(j, "bos_token_id", -1));
  if (auto it = j.find("eos_token_id"); it != j.end()) {
    if (it->is_number_integer()) {
      c.eos_token_ids.push_back(it->get<int64_t>());
    } else if (it->is_array()) {
      for (const auto& e : *it) {
        if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int64_t>());
      }
    }
  }

  // transformers 5 keeps theta and scaling under rope_parameters; older configs keep them at top level.
  json rope = json::object();
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) rope = *it;
  if (auto it = j.find("rope_scaling"); it != j.end() && it->is_object()) rope.update(*it);
  double theta_top = 10000.0;
  KVC_ASSIGN_OR_RETURN(theta_top, JsonGet<double>(j, "rope_theta", 10000.0));
  KVC_ASSIGN_OR_RETURN(c.rope_theta, JsonGet<double>(rope, "rope_theta", theta_top));
  std::string rope_type;
  KVC_ASSIGN_OR_RETURN(rope_type, JsonGet<std::string>(rope, "type", ""));
  KVC_ASSIGN_OR_RETURN(rope_type, JsonGet<std::string>(rope, "rope_type", rope_type));
  RopeScaling& r = c.rope_scaling;
  KVC_ASSIGN_OR_RETURN(r.type, ParseRopeType(rope_type));
  KVC_ASSIGN_OR_RETURN(r.factor, JsonGet<double>(rope, "factor", 1.0));
  KVC_ASSIGN_OR_RETURN(r.original_max_position_embeddings,
                       JsonGet<int64_t>(rope, "original_max_position_embeddings", 0));
  if ((r.type == RopeScalingType::kYarn || r.type == RopeScalingType::kLlama3) &&
      r.original_max_position_embeddings == 0) {
    // Hugging Face falls back to the model window when the config leaves it out.
    r.original_max_position_embeddings = c.max_position_embeddings;
  }
  KVC_ASSIGN_OR_RETURN(r.low_freq_factor, JsonGet<double>(rope, "low_freq_factor", 1.0));
  KVC_ASSIGN_OR_RETURN(r.high_freq_factor, JsonGet<double>(rope, "high_freq_factor", 4.0));
  KVC_ASSIGN_OR_RETURN(r.beta_fast, JsonGet<double>(rope, "beta_fast", 32.0));
  KVC_ASSIGN_OR_RETURN(r.beta_slow, JsonGet<double>(rope, "beta_slow", 1.0));
  KVC_ASSIGN_OR_RETURN(r.mscale, JsonGet<double>(rope, "mscale", 0.0));
  KVC_ASSIGN_OR_RETURN(r.mscale_all_dim, JsonGet<double>(rope, "mscale_all_dim", 0.0));
  KVC_ASSIGN_OR_RETURN(r.attention_factor, JsonGet<double>(rope, "attention_factor", 0.0));
  KVC_ASSIGN_OR_RETURN(r.truncate, JsonGet<bool>(rope, "truncate", true));
  KVC_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& gguf) {
  ModelConfig c;
  KVC_ASSIGN_OR_RETURN(c.architecture, gguf.GetString("general.architecture"));
  if (!SupportedArchitecture(c.architecture)) return UnsupportedArchitecture(c.architecture);
  const std::string p = c.architecture + ".";
  auto name = gguf.GetString("general.name");
  c.name = name.ok() ? *name : c.architecture;
  KVC_ASSIGN_OR_RETURN(c.num_layers, gguf.GetInt(p + "block_count"));
  KVC_ASSIGN_OR_RETURN(c.num_heads, gguf.GetInt(p + "attention.head_count"));
  auto kv = gguf.GetInt(p + "attention.head_count_kv");
  c.num_kv_heads = kv.ok() ? *kv : c.num_heads;
  KVC_ASSIGN_OR_RETURN(c.hidden_size, gguf.GetInt(p + "embedding_length"));
  KVC_ASSIGN_OR_RETURN(c.intermediate_size, gguf.GetInt(p + "feed_forward_length"));
  KVC_ASSIGN_OR_RETURN(c.max_position_embeddings, gguf.GetInt(p + "context_length"));
  KVC_ASSIGN_OR_RETURN(c.rms_norm_eps, gguf.GetFloat(p + "attention.layer_norm_rms_epsilon"));
  auto theta = gguf.GetFloat(p + "rope.freq_base");
  c.rope_theta = theta.ok() ? *theta : 10000.0;
  auto key_len = gguf.GetInt(p + "attention.key_length");
  c.head_dim = key_len.ok() ? *key_len : (c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  auto vocab = gguf.GetInt(p + "vocab_size");
  if (vocab.ok()) {
    c.vocab_size = *vocab;
  } else if (const GgufValue* tokens = gguf.Find("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(tokens->strings.size());
  } else if (const GgufTensorInfo* emb = gguf.FindTensor("token_embd.weight")) {
    c.vocab_size = emb->ne.size() == 2 ? emb->ne[1] : 0;
  }
  c.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  c.attention_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr;
  auto bos = gguf.GetInt("tokenizer.ggml.bos_token_id");
  c.bos_token_id = bos.ok() ? *bos : -1;
  auto eos = gguf.GetInt("tokenizer.ggml.eos_token_id");
  if (eos.ok()) c.eos_token_ids.push_back(*eos);
  auto eot = gguf.GetInt("tokenizer.ggml.eot_token_id");
  if (eot.ok() && (c.eos_token_ids.empty() || c.eos_token_ids[0] != *eot)) c.eos_token_ids.push_back(*eot);

  auto scaling_type = gguf.GetString(p + "rope.scaling.type");
  if (scaling_type.ok()) {
    RopeScaling& r = c.rope_scaling;
    KVC_ASSIGN_OR_RETURN(r.type, ParseRopeType(*scaling_type));
    auto factor = gguf.GetFloat(p + "rope.scaling.factor");
    r.factor = factor.ok() ? *factor : 1.0;
    auto orig = gguf.GetInt(p + "rope.scaling.original_context_length");
    r.original_max_position_embeddings = orig.ok() ? *orig : 0;
  }
  KVC_RETURN_IF_ERROR(c.Validate());
  return c;
}

const char* RopeTypeName(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::kNone: return "default";
    case RopeScalingType::kLinear: return "linear";
    case RopeScalingType::kLlama3: return "llama3";
    case RopeScalingType::kYarn: return "yarn";
  }
  return "?";
}

}  // namespace kvc
