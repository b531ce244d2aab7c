#include "compressor/model/gguf_weights.h"

#include <ATen/Parallel.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "compressor/model/ggml_dequant.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

// GGUF per-block tensor suffix -> Hugging Face module path inside model.layers.N.
constexpr std::pair<const char*, const char*> kBlockNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

constexpr std::pair<const char*, const char*> kGlobalNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
    {"rope_freqs.weight", "rope_freqs.weight"},
};

// Inverse of llama.cpp's permute(): rows were regrouped from [heads, 2, half, ...] to [heads, half, 2, ...].
torch::Tensor Unpermute(const torch::Tensor& w, int64_t heads) {
  auto sizes = w.sizes().vec();
  int64_t rows = sizes[0];
  std::vector<int64_t> grouped = {heads, rows / heads / 2, 2};
  grouped.insert(grouped.end(), sizes.begin() + 1, sizes.end());
  return w.reshape(grouped).transpose(1, 2).reshape(sizes).contiguous();
}

}  // namespace

absl::StatusOr<std::unique_ptr<GgufWeights>> GgufWeights::Create(std::shared_ptr<const GgufFile> gguf,
                                                                  const ModelConfig& config) {
  auto weights = std::unique_ptr<GgufWeights>(new GgufWeights(gguf, config));
  for (const GgufTensorInfo& t : gguf->tensors()) {
    bool mapped = false;
    for (const auto& [g, hf] : kGlobalNames) {
      if (t.name == g) {
        weights->hf_to_gguf_[hf] = t.name;
        mapped = true;
      }
    }
    if (mapped || !absl::StartsWith(t.name, "blk.")) continue;
    std::vector<std::string> parts = absl::StrSplit(t.name, absl::MaxSplits('.', 2));
    int layer = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[1], &layer)) continue;
    for (const auto& [g, hf] : kBlockNames) {
      if (parts[2] == g) weights->hf_to_gguf_[absl::StrCat("model.layers.", layer, ".", hf)] = t.name;
    }
  }
  return weights;
}

absl::StatusOr<torch::Tensor> GgufWeights::Dequantize(const GgufTensorInfo& info) {
  const uint32_t type = static_cast<uint32_t>(info.type);
  const GgmlTypeTraits* traits = FindGgmlTypeTraits(type);
  if (traits == nullptr || info.data == nullptr) {
    return absl::UnimplementedError(absl::StrCat("tensor ", info.name, " uses quantization type ",
                                                 GgmlTypeName(type), ", which kvc does not support"));
  }
  const int64_t n = info.NumElements();
  const int64_t n_blocks = n / traits->block_elems;
  torch::Tensor out = torch::empty({n}, torch::kFloat32);
  float* dst = out.data_ptr<float>();
  absl::Status status;
  std::mutex mu;
  // Blocks are independent; split them over torch's intra-op threads.
  at::parallel_for(0, n_blocks, 1024, [&](int64_t begin, int64_t end) {
    absl::Status s = DequantizeBlocks(type, info.data + begin * traits->block_bytes, end - begin,
                                      dst + begin * traits->block_elems);
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      status = s;
    }
  });
  KVC_RETURN_IF_ERROR(status);
  return out.reshape(info.TorchShape());
}

absl::StatusOr<torch::Tensor> GgufWeights::Load(const std::string& name) const {
  auto it = hf_to_gguf_.find(name);
  if (it == hf_to_gguf_.end()) return absl::NotFoundError(absl::StrCat("tensor ", name, " is not in the GGUF file"));
  const GgufTensorInfo* info = gguf_->FindTensor(it->second);
  KVC_ASSIGN_OR_RETURN(torch::Tensor t, Dequantize(*info));
  if (config_.architecture == "llama") {
    if (absl::StrContains(name, "self_attn.q_proj.")) return Unpermute(t, config_.num_heads);
    if (absl::StrContains(name, "self_attn.k_proj.")) return Unpermute(t, config_.num_kv_heads);
  }
  return t;
}

std::vector<std::string> GgufWeights::Names() const {
  std::vector<std::string> names;
  for (const auto& [hf, g] : hf_to_gguf_) names.push_back(hf);
  return names;
}

}  // namespace kvc
