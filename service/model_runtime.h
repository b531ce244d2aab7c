// ModelRuntime: the loaded model, its tokenizer and chat format, shared by the compress and generate roles
// of one server, plus the request pieces both roles build the same way (the requested-model check, the
// suffix built from a query).
//
// Ownership: owns the model and the tokenizer. Roles borrow the runtime; it must outlive them.
// Thread safety: immutable after Load; every method may be called from any thread.
#ifndef KVC_SERVICE_MODEL_RUNTIME_H_
#define KVC_SERVICE_MODEL_RUNTIME_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compressor/model/llama_model.h"
#include "compressor/tokenizer/chat_template.h"
#include "compressor/tokenizer/tokenizer.h"

namespace kvc {

struct ModelRuntimeOptions {
  std::string path;            // a .gguf file, or what LlamaModel::Load accepts; empty: DefaultModelPath()
  std::string device = "cpu";  // "cpu", "cuda", "cuda:N"
  std::string dtype = "auto";  // "auto", "float32", "bfloat16", "float16"
  std::string weights = "float";  // "float", "q4" or "int8" (CPU only; compressor/model/linear_weight.h)
  int num_threads = 0;         // CPU intra-op threads; 0 keeps LibTorch's default
  std::string chat_format = "auto";  // "auto" (from the model's template), "chatml", "llama3", "llama2", "raw"
};

class ModelRuntime {
 public:
  // NOT_FOUND when there is no model, INVALID_ARGUMENT for a bad device, dtype or chat format, and the
  // loader's own errors for unreadable files.
  static absl::StatusOr<std::unique_ptr<ModelRuntime>> Load(const ModelRuntimeOptions& options);
  // Wraps an already-loaded model and tokenizer (tests).
  static absl::StatusOr<std::unique_ptr<ModelRuntime>> FromParts(std::unique_ptr<LlamaModel> model,
                                                                 std::unique_ptr<Tokenizer> tokenizer,
                                                                 ChatFormat chat_format);

  const LlamaModel& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  ChatFormat chat_format() const { return chat_format_; }
  const std::string& name() const { return model_->config().name; }
  const std::string& fingerprint() const { return model_->fingerprint(); }
  std::string device() const;  // e.g. "cpu", "cuda:0"
  std::string dtype() const;   // "float32", "bfloat16", "float16"
  std::string weights() const { return WeightFormatName(model_->weights()); }  // "float", "q4", "int8"
  // What the model's device holds for kvc now: on CUDA the caching allocator's reserved bytes (what the
  // driver reports as used), on CPU the model's weights (caches come and go with the calls).
  int64_t device_memory_bytes() const;

  // OK when `requested` is unset or names the loaded model (its name, or its fingerprint in any case);
  // else FAILED_PRECONDITION saying both.
  absl::Status CheckRequestedModel(const std::optional<std::string>& requested) const;

  // The protected prefix: template start, system prompt (none when `system` is empty), "Context:\n".
  absl::StatusOr<std::vector<int64_t>> EncodePrefix(absl::string_view system) const;
  // One document's text, encoded as content (special-token text stays plain text).
  absl::StatusOr<std::vector<int64_t>> EncodeDocument(absl::string_view text) const;
  // The separator placed between documents ("\n\n").
  const std::vector<int64_t>& document_separator() const { return separator_; }
  // The suffix for a question: "\n\nQuestion: {query}", end of the user turn, generation prompt. The
  // same for Compress (scoring) and Generate (decoding).
  absl::StatusOr<std::vector<int64_t>> EncodeSuffix(absl::string_view query) const;

 private:
  ModelRuntime(std::unique_ptr<LlamaModel> model, std::unique_ptr<Tokenizer> tokenizer, ChatFormat format,
               std::vector<int64_t> separator)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), chat_format_(format),
        separator_(std::move(separator)) {}

  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ChatFormat chat_format_;
  std::vector<int64_t> separator_;
};

}  // namespace kvc

#endif  // KVC_SERVICE_MODEL_RUNTIME_H_
