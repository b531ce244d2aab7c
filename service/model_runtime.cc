#include "service/model_runtime.h"

#include <ATen/DeviceAccelerator.h>

#include <filesystem>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "compressor/model/default_model.h"
#include "compressor/model/model_dtype.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

namespace fs = std::filesystem;

// The tokenizer sits inside a .gguf file or next to the weights of a Hugging Face directory; a path to one
// safetensors file (or its index) finds it in that file's directory.
std::string TokenizerPath(const std::string& model_path) {
  std::error_code ec;
  fs::path p(model_path);
  if (fs::is_directory(p, ec) || p.extension() == ".gguf") return model_path;
  if (p.extension() == ".safetensors" || p.extension() == ".json") return p.parent_path().string();
  return model_path;  // probably a .gguf under another name; LoadTokenizer sniffs the file
}

std::vector<int64_t> Widen(const std::vector<int32_t>& ids) { return std::vector<int64_t>(ids.begin(), ids.end()); }

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRuntime>> ModelRuntime::Load(const ModelRuntimeOptions& options) {
  std::string path = options.path;
  if (path.empty()) {
    KVC_ASSIGN_OR_RETURN(path, DefaultModelPath());
  }
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat("model: ", path, " does not exist"));
  // Cheap option checks before the (slow) weight load.
  KVC_ASSIGN_OR_RETURN(std::optional<torch::ScalarType> dtype, ParseModelDtype(options.dtype));
  KVC_ASSIGN_OR_RETURN(WeightFormat weights, ParseWeightFormat(options.weights));
  std::optional<ChatFormat> forced_format;
  if (options.chat_format != "auto" && !options.chat_format.empty()) {
    KVC_ASSIGN_OR_RETURN(forced_format, ParseChatFormat(options.chat_format));
  }
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_threads: ", options.num_threads, " must be >= 0"));
  }

  ModelOptions model_options;
  model_options.device = options.device.empty() ? "cpu" : options.device;
  model_options.dtype = dtype;
  model_options.num_threads = options.num_threads;
  model_options.weights = weights;
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(TokenizerPath(path)));
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::Load(path, model_options));
  const ChatFormat format = forced_format.value_or(DetectChatFormat(tokenizer->chat_template()));
  return FromParts(std::move(model), std::move(tokenizer), format);
}

absl::StatusOr<std::unique_ptr<ModelRuntime>> ModelRuntime::FromParts(std::unique_ptr<LlamaModel> model,
                                                                      std::unique_ptr<Tokenizer> tokenizer,
                                                                      ChatFormat chat_format) {
  if (model == nullptr || tokenizer == nullptr) {
    return absl::InvalidArgumentError("model runtime: a model and a tokenizer are required");
  }
  // Models often pad their embedding table past the tokenizer's vocabulary; the other way round, the
  // tokenizer could produce ids the model cannot embed.
  if (tokenizer->vocab_size() > model->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", tokenizer->vocab_size(),
                                                   " tokens, more than the model's vocabulary of ",
                                                   model->config().vocab_size));
  }
  KVC_ASSIGN_OR_RETURN(std::vector<int32_t> separator, tokenizer->Encode("\n\n"));
  return std::unique_ptr<ModelRuntime>(
      new ModelRuntime(std::move(model), std::move(tokenizer), chat_format, Widen(separator)));
}

int64_t ModelRuntime::device_memory_bytes() const {
  const torch::Device d = model_->device();
  if (!d.is_cuda()) return model_->weight_bytes();
  const auto stats = at::accelerator::getDeviceStats(d.has_index() ? d.index() : 0);
  return stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].current;
}

std::string ModelRuntime::device() const {
  const torch::Device d = model_->device();
  if (d.is_cuda()) return absl::StrCat("cuda:", d.has_index() ? static_cast<int>(d.index()) : 0);
  return d.str();
}

std::string ModelRuntime::dtype() const {
  switch (model_->dtype()) {
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    default: return "float32";
  }
}

absl::Status ModelRuntime::CheckRequestedModel(const std::optional<std::string>& requested) const {
  if (!requested.has_value()) return absl::OkStatus();
  if (*requested == name() || absl::AsciiStrToLower(*requested) == fingerprint()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("model: the request expects '", *requested,
                                                    "', this server runs '", name(), "' (fingerprint ",
                                                    fingerprint(), ")"));
}

absl::StatusOr<std::vector<int64_t>> ModelRuntime::EncodePrefix(absl::string_view system) const {
  const CompressionPrompt prompt = BuildCompressionPrompt(chat_format_, system, "");
  KVC_ASSIGN_OR_RETURN(std::vector<int32_t> ids, EncodePrompt(*tokenizer_, prompt.prefix));
  return Widen(ids);
}

absl::StatusOr<std::vector<int64_t>> ModelRuntime::EncodeDocument(absl::string_view text) const {
  KVC_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer_->Encode(text));
  return Widen(ids);
}

absl::StatusOr<std::vector<int64_t>> ModelRuntime::EncodeSuffix(absl::string_view query) const {
  const CompressionPrompt prompt = BuildCompressionPrompt(chat_format_, "", query);
  KVC_ASSIGN_OR_RETURN(std::vector<int32_t> ids, EncodePrompt(*tokenizer_, prompt.suffix));
  return Widen(ids);
}

}  // namespace kvc
