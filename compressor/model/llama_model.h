// A Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM2) in LibTorch: embeddings, RMSNorm, RoPE,
// grouped-query attention over a KvCache with explicit positions, SwiGLU MLP, optionally tied lm_head.
//
// Ownership: the model owns its weights. A KvCache is owned by the caller and passed per call.
// Thread safety: the model is immutable after Load; Forward may run concurrently on distinct caches
// (LibTorch's intra-op pool is shared, so concurrent calls compete for the same cores).
#ifndef KVC_COMPRESSOR_MODEL_LLAMA_MODEL_H_
#define KVC_COMPRESSOR_MODEL_LLAMA_MODEL_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "compressor/kv/kv_cache.h"
#include "compressor/model/linear_weight.h"
#include "compressor/model/output_head.h"
#include "compressor/model/model_config.h"
#include "compressor/model/rope.h"
#include "compressor/model/weight_source.h"

namespace kvc {

struct ModelOptions {
  // "cpu", "cuda", "cuda:1". CUDA is refused with FAILED_PRECONDITION when no GPU is present.
  std::string device = "cpu";
  // float32 (default) or bfloat16 on CPU; bfloat16 (default) or float16 or float32 on CUDA.
  std::optional<torch::ScalarType> dtype;
  // Intra-op threads for CPU; 0 keeps LibTorch's default.
  int num_threads = 0;
  // How the linear layers keep their weights (linear_weight.h). Under q4 and int8 (CPU only) the lm_head is
  // kept as int8 rows (output_head.h; a tied embedding reads them, an untied one stays in bfloat16); under q4
  // products of a few rows (decode) run on bfloat16 activations, under int8 every product on int8 rows. The
  // residual stream, norms, attention and the KV cache stay in the model dtype.
  WeightFormat weights = WeightFormat::kFloat;
  // Under q4 and int8, the kernels of products of a few rows: vnni_gemv's where the CPU has AVX512-VNNI, or
  // LibTorch's everywhere (to compare the two, and to test the path other CPUs take).
  vnni_gemv::Kernels kernels = vnni_gemv::Kernels::kAuto;
};

// When neither logits nor the residual after the last layer are asked for, the last layer stops once its
// K/V are appended (and its queries captured): nothing would read its attention or MLP.
struct ForwardOptions {
  // Indices into the chunk (0..n-1) whose next-token logits are wanted; the lm_head runs on these only.
  std::vector<int64_t> logits_for;
  // Capture post-RoPE queries of the last N positions of the chunk, per layer (0: none).
  int64_t capture_queries = 0;
  // Or of these rows of the chunk ([R] int64, ascending, in 0..n-1), which copies only R rows per layer.
  std::vector<int64_t> capture_rows;
  // Capture the hidden states (the residual stream) after this many decoder layers, 1..num_layers (0: none).
  int64_t capture_hidden_after = 0;
};

struct ForwardOutput {
  torch::Tensor logits;                // [logits_for.size(), vocab] float32 (undefined when none asked)
  std::vector<torch::Tensor> queries;  // per layer [num_heads, N or R, head_dim] in the model dtype
  torch::Tensor hidden;                // [n, hidden] in the model dtype (undefined when not asked)
};

class LlamaModel {
 public:
  // `path`: a .gguf file, a .safetensors file or index, or a directory with config.json and safetensors.
  // NOT_FOUND, INVALID_ARGUMENT / DATA_LOSS (malformed or truncated files) or UNIMPLEMENTED (architecture or
  // quantization kvc does not run); never crashes on bad files.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& path,
                                                         const ModelOptions& options = {});
  // From an already-open weight source (used by tests and by Load).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> FromWeights(const ModelConfig& config,
                                                                const WeightSource& weights,
                                                                const ModelOptions& options);

  const ModelConfig& config() const { return config_; }
  const Rope& rope() const { return *rope_; }
  torch::Device device() const { return device_; }
  torch::ScalarType dtype() const { return dtype_; }
  WeightFormat weights() const { return weights_; }
  // Bytes of every weight held in memory.
  int64_t weight_bytes() const;
  // SHA-256 (hex) over the architecture, the weights and the tokenizer data of the model files.
  const std::string& fingerprint() const { return fingerprint_; }

  // A cache shaped for this model, empty.
  KvCache NewCache() const;

  // Runs `tokens` ([n] int64) at `positions` ([n] int64) after everything already in `cache`, appends
  // their K/V to it, and returns what `options` asks for. The cache may be ragged (kv_cache.h): each layer
  // attends to its own entries, and padding is masked per KV head. INVALID_ARGUMENT for out-of-vocabulary
  // ids or shape mismatches, RESOURCE_EXHAUSTED when the device runs out of memory.
  absl::StatusOr<ForwardOutput> Forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                                        KvCache& cache, const ForwardOptions& options = {}) const;

  // Prefill `tokens` in chunks of `chunk_tokens`, continuing from cache.next_position(); returns the
  // logits of the last token [vocab] and advances next_position.
  absl::StatusOr<torch::Tensor> Prefill(const std::vector<int64_t>& tokens, KvCache& cache,
                                        int64_t chunk_tokens = 512) const;

 private:
  struct Layer {
    torch::Tensor attn_norm, ffn_norm;
    LinearWeight wqkv;       // fused [ (H + 2*Hkv) * D, hidden ], bias optional
    LinearWeight wo;         // [hidden, H * D]
    LinearWeight w_gate_up;  // fused [2 * ffn, hidden]
    LinearWeight w_down;     // [hidden, ffn]
  };

  // How a chunk of n tokens after `past` cached slots attends: an explicit [n, past + n] bool mask, or SDPA's
  // causal flag, or nothing (one token sees everything). after_cache: the mask is only "every cached slot,
  // then causal" (no sliding window), which CpuChunkAttention computes without it.
  struct ChunkMask {
    std::optional<torch::Tensor> mask;
    bool is_causal = false;
    bool after_cache = false;
  };

  LlamaModel() = default;
  ChunkMask MaskFor(int64_t past, int64_t n) const;
  // [n, past + n] bool: the cache, then causal inside the chunk (and the sliding window, if any).
  torch::Tensor CausalMask(int64_t past, int64_t n) const;
  absl::StatusOr<ForwardOutput> ForwardImpl(const torch::Tensor& tokens, const torch::Tensor& positions,
                                            KvCache& cache, const ForwardOptions& options) const;
  // x [n, hidden] -> [n, hidden] in `out` (the model dtype when unset).
  torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& w,
                        std::optional<torch::ScalarType> out = std::nullopt) const;

  ModelConfig config_;
  std::optional<Rope> rope_;
  torch::Device device_ = torch::kCPU;
  torch::ScalarType dtype_ = torch::kFloat32;
  WeightFormat weights_ = WeightFormat::kFloat;
  std::string fingerprint_;
  torch::Tensor embed_;    // [vocab, hidden] in the model dtype (bfloat16 under q4); undefined when tied
  torch::Tensor norm_;     // [hidden]
  OutputHead lm_head_;     // [vocab, hidden] like embed_, int8 rows under q4; a tied model's embedding too
  std::vector<Layer> layers_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_LLAMA_MODEL_H_
