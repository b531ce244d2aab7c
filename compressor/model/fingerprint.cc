#include "compressor/model/fingerprint.h"

#include <filesystem>

#include "compressor/util/mapped_file.h"
#include "compressor/util/sha256.h"
#include "compressor/util/status_macros.h"

namespace kvc {

absl::StatusOr<std::string> ComputeFingerprint(const ModelConfig& config, const std::vector<std::string>& files) {
  Sha256 h;
  h.UpdateField("kvc-model-fingerprint-v1");
  h.UpdateField(config.CanonicalString());
  for (const std::string& path : files) {
    KVC_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> f, MappedFile::Open(path));
    // The file name is left out on purpose: renaming or moving a model keeps its caches valid.
    Sha256 content;
    content.Update(f->data(), f->size());
    h.UpdateField(content.FinalHex());
  }
  return h.FinalHex();
}

}  // namespace kvc
