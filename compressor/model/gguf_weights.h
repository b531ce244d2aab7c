// Weights from a GGUF file under Hugging Face names, dequantized to float32 on load.
//
// llama.cpp's converter permutes the rows of Q and K (and their biases) of llama-architecture models into
// its interleaved rotary layout; Load undoes that, so the result equals the original checkpoint's tensor.
//
// Ownership: holds a shared reference to the GgufFile.
#ifndef KVC_COMPRESSOR_MODEL_GGUF_WEIGHTS_H_
#define KVC_COMPRESSOR_MODEL_GGUF_WEIGHTS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compressor/model/gguf_file.h"
#include "compressor/model/model_config.h"
#include "compressor/model/weight_source.h"

namespace kvc {

class GgufWeights : public WeightSource {
 public:
  // `config` must come from the same file (it supplies head counts for the un-permutation).
  static absl::StatusOr<std::unique_ptr<GgufWeights>> Create(std::shared_ptr<const GgufFile> gguf,
                                                             const ModelConfig& config);

  bool Has(const std::string& name) const override { return hf_to_gguf_.count(name) > 0; }
  // UNIMPLEMENTED naming the tensor and type when its quantization is not supported.
  absl::StatusOr<torch::Tensor> Load(const std::string& name) const override;
  std::vector<std::string> Names() const override;

  // Dequantizes a tensor by its GGUF name, in torch order, with no renaming or un-permutation.
  static absl::StatusOr<torch::Tensor> Dequantize(const GgufTensorInfo& info);

 private:
  GgufWeights(std::shared_ptr<const GgufFile> gguf, ModelConfig config)
      : gguf_(std::move(gguf)), config_(std::move(config)) {}

  std::shared_ptr<const GgufFile> gguf_;
  ModelConfig config_;
  std::map<std::string, std::string> hf_to_gguf_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_GGUF_WEIGHTS_H_
