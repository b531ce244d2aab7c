// Where a model's tensors come from. Names follow Hugging Face's Llama layout
// ("model.layers.3.self_attn.q_proj.weight"), whatever the file format, so that the model code is written
// once.
//
// Thread safety: implementations are immutable after creation; Load may be called concurrently.
#ifndef KVC_COMPRESSOR_MODEL_WEIGHT_SOURCE_H_
#define KVC_COMPRESSOR_MODEL_WEIGHT_SOURCE_H_

#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"

namespace kvc {

class WeightSource {
 public:
  virtual ~WeightSource() = default;

  virtual bool Has(const std::string& name) const = 0;
  // The tensor in its stored dtype (dequantized to float32 for quantized formats), on CPU. It may be a
  // zero-copy view of a memory map that stays valid while this source lives. NOT_FOUND when absent.
  virtual absl::StatusOr<torch::Tensor> Load(const std::string& name) const = 0;
  virtual std::vector<std::string> Names() const = 0;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_WEIGHT_SOURCE_H_
