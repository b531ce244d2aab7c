#include "compressor/generate/generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "compressor/generate/sampler.h"
#include "compressor/generate/stop_strings.h"
#include "compressor/kv/compose.h"
#include "compressor/tokenizer/incremental_detokenizer.h"
#include "compressor/tokenizer/utf8.h"
#include "compressor/util/status_macros.h"
#include "compressor/util/torch_status.h"

namespace kvc {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::string ShortFingerprint(const std::string& f) { return f.substr(0, 12); }

absl::Status ValidateSampling(const SamplingOptions& s) {
  if (s.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.max_tokens: must be >= 1, got ", s.max_tokens));
  }
  // Written so that NaN fails too.
  if (!(s.temperature >= 0.0) || std::isinf(s.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.temperature: must be a finite value >= 0 (0 is greedy), got ", s.temperature));
  }
  if (s.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.top_k: must be >= 0 (0 is off), got ", s.top_k));
  }
  if (!(s.top_p > 0.0 && s.top_p <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.top_p: must be in (0, 1] (1 is off), got ", s.top_p));
  }
  for (size_t i = 0; i < s.stop.size(); ++i) {
    if (s.stop[i].empty()) return absl::InvalidArgumentError(absl::StrCat("sampling.stop[", i, "]: empty"));
    absl::Status utf8 = ValidateUtf8(s.stop[i], absl::StrCat("sampling.stop[", i, "]"));
    if (!utf8.ok()) return absl::InvalidArgumentError(utf8.message());
  }
  return absl::OkStatus();
}

// The position decoding continues at once the caches are prepared: a single cache goes on at its own
// next_position; a composition right after its longest layer (as ComposeCaches sets it).
int64_t StartPosition(const std::vector<const KvCache*>& caches) {
  if (caches.size() == 1) return caches[0]->next_position();
  int64_t longest = 0;
  for (int64_t l = 0; l < caches[0]->num_layers(); ++l) {
    int64_t total = 0;
    for (const KvCache* c : caches) total += c->length(l);
    longest = std::max(longest, total);
  }
  return longest;
}

}  // namespace

Generator::Generator(const LlamaModel* model, const Tokenizer* tokenizer, GeneratorOptions options)
    : model_(model), tokenizer_(tokenizer), options_(options) {}

absl::StatusOr<std::unique_ptr<Generator>> Generator::Create(const LlamaModel* model, const Tokenizer* tokenizer,
                                                             GeneratorOptions options) {
  if (model == nullptr) return absl::InvalidArgumentError("Generator: model is null");
  if (tokenizer == nullptr) return absl::InvalidArgumentError("Generator: tokenizer is null");
  if (options.prefill_chunk_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Generator: prefill_chunk_tokens must be >= 1, got ", options.prefill_chunk_tokens));
  }
  auto gen = std::unique_ptr<Generator>(new Generator(model, tokenizer, options));
  std::vector<int64_t>& eos = gen->eos_ids_;
  eos = model->config().eos_token_ids;
  if (tokenizer->eos_id().has_value()) eos.push_back(*tokenizer->eos_id());
  std::sort(eos.begin(), eos.end());
  eos.erase(std::unique(eos.begin(), eos.end()), eos.end());
  gen->sampleable_vocab_ = std::min<int64_t>(model->config().vocab_size, tokenizer->vocab_size());
  return gen;
}

absl::Status Generator::Validate(const GenerationRequest& req) const {
  if (req.caches.empty()) return absl::InvalidArgumentError("caches: empty; at least one cache is required");
  const ModelConfig& cfg = model_->config();
  for (size_t i = 0; i < req.caches.size(); ++i) {
    const KvCache* c = req.caches[i];
    if (c == nullptr) return absl::InvalidArgumentError(absl::StrCat("caches[", i, "]: null"));
    if (c->model_fingerprint().empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "caches[", i, "]: carries no model fingerprint, so the model that made it is unknown; refusing it"));
    }
    if (c->model_fingerprint() != model_->fingerprint()) {
      return absl::FailedPreconditionError(absl::StrCat("caches[", i, "]: made by model ",
                                                        ShortFingerprint(c->model_fingerprint()),
                                                        ", but this generator runs model ",
                                                        ShortFingerprint(model_->fingerprint())));
    }
    const KvCacheShape& s = c->shape();
    if (s.num_layers != cfg.num_layers || s.kv_heads != cfg.num_kv_heads || s.head_dim != cfg.head_dim) {
      return absl::FailedPreconditionError(absl::StrCat(
          "caches[", i, "]: shaped [layers ", s.num_layers, ", kv_heads ", s.kv_heads, ", head_dim ", s.head_dim,
          "] but the model has [", cfg.num_layers, ", ", cfg.num_kv_heads, ", ", cfg.head_dim, "]"));
    }
  }
  if (req.suffix.empty()) {
    return absl::InvalidArgumentError(
        "prompt: empty; the suffix needs at least one token, since the first generated token is sampled from "
        "the logits of its last one");
  }
  for (size_t i = 0; i < req.suffix.size(); ++i) {
    if (req.suffix[i] < 0 || req.suffix[i] >= cfg.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt: token id ", req.suffix[i], " at index ", i,
                                                     " is outside the vocabulary [0, ", cfg.vocab_size, ")"));
    }
  }
  KVC_RETURN_IF_ERROR(ValidateSampling(req.sampling));
  // Positions used: the suffix, then every generated token but the last (which is never fed back).
  const int64_t start = StartPosition(req.caches);
  const int64_t needed = start + static_cast<int64_t>(req.suffix.size()) + req.sampling.max_tokens - 1;
  if (needed > cfg.max_position_embeddings) {
    const int64_t room = cfg.max_position_embeddings - start - static_cast<int64_t>(req.suffix.size()) + 1;
    return absl::OutOfRangeError(absl::StrCat(
        "context overflow: the caches end at position ", start, ", the prompt adds ", req.suffix.size(),
        " tokens and max_tokens asks for ", req.sampling.max_tokens, ", past the model's ",
        cfg.max_position_embeddings, " positions",
        room >= 1 ? absl::StrCat("; max_tokens can be at most ", room)
                  : std::string("; the prompt alone does not fit")));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerationResult> Generator::Generate(
    const GenerationRequest& request, const std::function<bool(const GenerationPiece&)>& on_piece) const {
  KVC_RETURN_IF_ERROR(Validate(request));
  return CatchTorch([&] { return GenerateImpl(request, on_piece); });
}

absl::StatusOr<GenerationResult> Generator::GenerateImpl(
    const GenerationRequest& req, const std::function<bool(const GenerationPiece&)>& on_piece) const {
  c10::InferenceMode guard;
  const SamplingOptions& sp = req.sampling;
  const Clock::time_point t0 = Clock::now();
  auto cancelled = [](int64_t generated) {
    return absl::CancelledError(absl::StrCat("generation cancelled by the caller after ", generated, " tokens"));
  };
  if (req.keep_going && !req.keep_going()) return cancelled(0);

  // Decode on a private copy in the model's dtype and device: the inputs are shared and read-only.
  const torch::ScalarType dtype = model_->dtype();
  const torch::Device device = model_->device();
  auto on_model = [&](const KvCache& c) { return c.shape().dtype == dtype && c.shape().device == device; };
  std::optional<KvCache> cache;
  if (req.caches.size() == 1) {
    KVC_ASSIGN_OR_RETURN(cache, CopyCache(*req.caches[0], dtype, device));
  } else {
    std::vector<KvCache> moved;  // caches that had to be brought to the model's dtype/device first
    moved.reserve(req.caches.size());
    std::vector<const KvCache*> parts;
    for (const KvCache* c : req.caches) {
      if (on_model(*c)) {
        parts.push_back(c);
        continue;
      }
      KVC_ASSIGN_OR_RETURN(KvCache m, CopyCache(*c, dtype, device));
      moved.push_back(std::move(m));
      parts.push_back(&moved.back());
    }
    KVC_ASSIGN_OR_RETURN(cache, ComposeCaches(parts, model_->rope()));
  }
  const Clock::time_point t_composed = Clock::now();

  GenerationResult result;
  result.cached_tokens = cache->length();
  result.prompt_tokens = static_cast<int64_t>(req.suffix.size());
  result.timings.compose_seconds = Seconds(t0, t_composed);

  KVC_ASSIGN_OR_RETURN(torch::Tensor logits, model_->Prefill(req.suffix, *cache, options_.prefill_chunk_tokens));
  // On the CPU for the sampler; the copy also waits for the device, so the timings are real.
  logits = logits.to(torch::kCPU, torch::kFloat32);
  const Clock::time_point t_prefilled = Clock::now();
  result.timings.prefill_seconds = Seconds(t_composed, t_prefilled);

  TokenSampler sampler(SamplerParams{sp.temperature, sp.top_k, sp.top_p, sp.seed}, sampleable_vocab_);
  IncrementalDetokenizer detok(*tokenizer_, DecodeOptions{/*skip_special=*/true});
  StopStringFilter stops(sp.stop);
  Clock::time_point t_first;
  for (int64_t i = 0;; ++i) {
    if (i > 0 && req.keep_going && !req.keep_going()) return cancelled(i);
    const int64_t token = sampler.Next(logits);
    if (i == 0) {
      t_first = Clock::now();
      result.timings.time_to_first_token_seconds = Seconds(t0, t_first);
    }
    result.tokens.push_back(token);
    KVC_ASSIGN_OR_RETURN(std::string text, detok.Add(static_cast<int32_t>(token)));
    std::string released = stops.Add(text);
    std::string finish;
    if (stops.stopped()) {
      finish = "stop";
    } else if (sp.stop_on_eos && std::binary_search(eos_ids_.begin(), eos_ids_.end(), token)) {
      finish = "eos";
    } else if (i + 1 == sp.max_tokens) {
      finish = "length";
    }
    if (!finish.empty() && finish != "stop") {
      // End of stream: bytes of an unfinished character, then whatever was held back for the stop strings.
      released += stops.Add(detok.Finish());
      if (stops.stopped()) {
        finish = "stop";
      } else {
        released += stops.Flush();
      }
    }
    result.text += released;
    if (on_piece && !on_piece(GenerationPiece{token, std::move(released), i})) return cancelled(i + 1);
    if (!finish.empty()) {
      result.finish_reason = std::move(finish);
      break;
    }
    torch::Tensor tok = torch::tensor({token}, torch::kInt64);
    torch::Tensor pos = torch::tensor({cache->next_position()}, torch::kInt64);
    KVC_ASSIGN_OR_RETURN(ForwardOutput out, model_->Forward(tok, pos, *cache, ForwardOptions{{0}, 0}));
    cache->set_next_position(cache->next_position() + 1);
    logits = out.logits[0].to(torch::kCPU, torch::kFloat32);
  }
  const Clock::time_point t_end = Clock::now();
  result.timings.decode_seconds = Seconds(t_first, t_end);
  const int64_t n = static_cast<int64_t>(result.tokens.size());
  result.timings.mean_seconds_per_token = n > 1 ? result.timings.decode_seconds / static_cast<double>(n - 1) : 0.0;
  return result;
}

}  // namespace kvc
