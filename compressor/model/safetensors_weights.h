// Memory-mapped safetensors weights: one file, or the shards listed by model.safetensors.index.json.
//
// Ownership: the source owns its maps; tensors returned by Load keep their map alive on their own.
#ifndef KVC_COMPRESSOR_MODEL_SAFETENSORS_WEIGHTS_H_
#define KVC_COMPRESSOR_MODEL_SAFETENSORS_WEIGHTS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compressor/model/weight_source.h"
#include "compressor/util/mapped_file.h"

namespace kvc {

class SafetensorsWeights : public WeightSource {
 public:
  // `path` is a .safetensors file, a model.safetensors.index.json, or a directory holding either.
  // INVALID_ARGUMENT / DATA_LOSS for malformed or truncated files, NOT_FOUND when nothing is there.
  static absl::StatusOr<std::unique_ptr<SafetensorsWeights>> Open(const std::string& path);

  bool Has(const std::string& name) const override { return entries_.count(name) > 0; }
  absl::StatusOr<torch::Tensor> Load(const std::string& name) const override;
  std::vector<std::string> Names() const override;
  // The files that hold the weights, in a stable order (for fingerprints).
  const std::vector<std::string>& files() const { return files_; }

 private:
  struct Entry {
    std::shared_ptr<MappedFile> file;
    torch::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;  // absolute byte offsets in the file
  };
  absl::Status AddFile(const std::string& path);

  std::map<std::string, Entry> entries_;
  std::vector<std::string> files_;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_MODEL_SAFETENSORS_WEIGHTS_H_
