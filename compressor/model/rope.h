// Rotary position embeddings with Hugging Face's exact frequency math (default, linear, llama3, yarn) in
// float32, so that keys computed here, and keys re-rotated later, match transformers bit for bit on CPU.
//
// Thread safety: immutable after Create; CosSin and Apply may be called concurrently.
#ifndef KVC_COMPRESSOR_MODEL_ROPE_H_
#define KVC_COMPRESSOR_MODEL_ROPE_H_

#include <optional>
#include <utility>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "compressor/model/model_config.h"

namespace kvc {

class Rope {
 public:
  // freq_factors: optional per-frequency divisors [head_dim / 2] (GGUF's rope_freqs.weight, which llama.cpp
  // converters store instead of llama3 scaling metadata).
  static absl::StatusOr<Rope> Create(const ModelConfig& config,
                                     std::optional<torch::Tensor> freq_factors = std::nullopt);

  // [head_dim / 2] float32 on CPU.
  const torch::Tensor& inv_freq() const { return inv_freq_; }
  // inv_freq on `device`: a copy kept by OnDevice when it matches, else a fresh copy. On CUDA a fresh copy
  // from pageable host memory waits until the GPU's queue drains, so hot paths want the kept one.
  torch::Tensor inv_freq_on(const torch::Device& device) const;
  // This Rope with inv_freq also kept on `device` (its model's).
  Rope OnDevice(const torch::Device& device) const;
  // Multiplies cos and sin (yarn's attention factor; 1 otherwise).
  double attention_scaling() const { return attention_scaling_; }

  // positions: [n] int64 (any device). Returns cos, sin: [n, head_dim] of `dtype` on positions' device,
  // computed in float32 first.
  std::pair<torch::Tensor, torch::Tensor> CosSin(const torch::Tensor& positions,
                                                 torch::ScalarType dtype) const;

  // x: [..., n, head_dim]; cos, sin: [n, head_dim]. Returns x*cos + rotate_half(x)*sin.
  static torch::Tensor Apply(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

 private:
  Rope(torch::Tensor inv_freq, double attention_scaling)
      : inv_freq_(std::move(inv_freq)), attention_scaling_(attention_scaling) {}

  torch::Tensor inv_freq_;
  torch::Tensor inv_freq_device_;  // inv_freq_ on the device of OnDevice; undefined otherwise
  double attention_scaling_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_ROPE_H_
