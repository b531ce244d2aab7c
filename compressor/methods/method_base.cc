#include "compressor/methods/method_base.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "compressor/kv/compose.h"
#include "compressor/util/status_macros.h"
#include "compressor/util/torch_status.h"

namespace kvc {

absl::StatusOr<CompressionResult> MethodBase::Compress(const CompressionInput& in) const {
  KVC_RETURN_IF_ERROR(CheckInput(in));
  return CatchTorch([&]() -> absl::StatusOr<CompressionResult> {
    c10::InferenceMode guard;
    return DoCompress(in);
  });
}

namespace {

std::string ShortFingerprint(const std::string& f) { return f.empty() ? std::string("(none)") : f.substr(0, 12); }

// A prefilled context must come from this model and hold one entry per context token in every layer.
absl::Status CheckPrefilled(const LlamaModel& model, const KvCache& cache, const std::vector<int64_t>& context) {
  const KvCacheShape& got = cache.shape();
  const KvCacheShape want = model.NewCache().shape();
  if (cache.model_fingerprint() != model.fingerprint()) {
    return absl::FailedPreconditionError(absl::StrCat("prefilled: the context's KV was made by model ",
                                                      ShortFingerprint(cache.model_fingerprint()),
                                                      ", not by the loaded model ",
                                                      ShortFingerprint(model.fingerprint())));
  }
  if (got.num_layers != want.num_layers || got.kv_heads != want.kv_heads || got.head_dim != want.head_dim ||
      got.dtype != want.dtype || got.device != want.device) {
    return absl::FailedPreconditionError(absl::StrCat(
        "prefilled: the context's KV has ", got.num_layers, " layers x ", got.kv_heads, " kv heads x ",
        got.head_dim, " (", c10::toString(got.dtype), " on ", got.device.str(), "), the model wants ",
        want.num_layers, " x ", want.kv_heads, " x ", want.head_dim, " (", c10::toString(want.dtype), " on ",
        want.device.str(), ")"));
  }
  const int64_t n = cache.length();
  if (n == 0) return absl::InvalidArgumentError("context: empty, nothing to compress (the prefilled KV is empty)");
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    if (cache.Valid(l).defined()) {
      return absl::InvalidArgumentError(absl::StrCat("prefilled: layer ", l,
                                                     " keeps different entries per head; expected one entry per "
                                                     "context token in every head"));
    }
    if (cache.length(l) != n) {
      return absl::InvalidArgumentError(absl::StrCat("prefilled: layer ", l, " holds ", cache.length(l),
                                                     " entries and layer 0 ", n,
                                                     "; expected one entry per context token in every layer"));
    }
  }
  if (!context.empty() && static_cast<int64_t>(context.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("context: ", context.size(),
                                                   " token ids, but the prefilled KV holds ", n, " entries"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MethodBase::CheckInput(const CompressionInput& in) const {
  if (in.model == nullptr) return absl::InvalidArgumentError("no model given");
  if (in.prefilled != nullptr) {
    KVC_RETURN_IF_ERROR(CheckPrefilled(*in.model, *in.prefilled, in.context));
  } else if (in.context.empty()) {
    return absl::InvalidArgumentError("context: empty, nothing to compress");
  }
  const int64_t context_len = ContextLength(in);
  if (in.protected_prefix < 0 || in.protected_prefix > context_len) {
    return absl::OutOfRangeError(absl::StrCat("protected_prefix: ", in.protected_prefix,
                                              " is outside the context of ", context_len, " tokens"));
  }
  if (!in.boundaries.empty() && static_cast<int64_t>(in.boundaries.size()) != context_len) {
    return absl::InvalidArgumentError(absl::StrCat("boundaries: ", in.boundaries.size(), " flags for a context of ",
                                                   context_len, " tokens"));
  }
  if (query_aware() && in.suffix.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("query: empty, but method ", name(), " scores with the query"));
  }
  const int64_t vocab = in.model->config().vocab_size;
  for (const auto* ids : {&in.context, &in.suffix}) {
    for (int64_t id : *ids) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat(ids == &in.context ? "context" : "query", ": token id ", id,
                                                       " is outside the vocabulary [0, ", vocab, ")"));
      }
    }
  }
  return absl::OkStatus();
}

int64_t MethodBase::ContextLength(const CompressionInput& in) {
  return in.prefilled != nullptr ? in.prefilled->length() : static_cast<int64_t>(in.context.size());
}

absl::StatusOr<int64_t> MethodBase::Budget(const CompressionInput& in, int64_t scored_len) const {
  KVC_ASSIGN_OR_RETURN(int64_t k, KeptTokens(spec_.ratio, spec_.target_tokens, scored_len));
  return std::max(k, std::min(in.protected_prefix, scored_len));
}

absl::Status MethodBase::CheckCancelled(const CompressionInput& in) const {
  if (in.keep_going && !in.keep_going()) return absl::CancelledError("compression cancelled");
  return absl::OkStatus();
}

int64_t MethodBase::KeptSoFar(int64_t k_ctx, int64_t seen, int64_t C) {
  if (seen >= C) return k_ctx;
  return static_cast<int64_t>(std::ceil(static_cast<double>(k_ctx) * seen / C));
}

absl::StatusOr<int64_t> MethodBase::QueryGuidedChunk(const CompressionInput& in, int64_t chunk_tokens) {
  if (in.prefilled != nullptr) return ContextLength(in);
  const int64_t window = in.model->config().max_position_embeddings;
  if (chunk_tokens > window) {
    return absl::OutOfRangeError(
        absl::StrCat("options.chunk_tokens: ", chunk_tokens, " is past the model window of ", window, " tokens"));
  }
  return chunk_tokens;
}

int64_t AutoPrefillChunk(const LlamaModel& model) {
  if (!model.device().is_cuda()) return 512;
  return std::clamp<int64_t>(model.config().max_position_embeddings, 512, 8192);
}

absl::Status MethodBase::Prefill(const CompressionInput& in, const std::vector<int64_t>& ids, int64_t first_position,
                                 int64_t chunk, KvCache& cache, CompressionStats* stats) const {
  if (chunk == kAutoPrefillChunk) chunk = AutoPrefillChunk(*in.model);
  const int64_t n = static_cast<int64_t>(ids.size());
  torch::Tensor all = torch::tensor(ids, torch::kInt64);
  // As in Finch: positions made on the model's device need no copy from the host per chunk.
  const auto on_device = torch::TensorOptions().dtype(torch::kInt64).device(in.model->device());
  for (int64_t start = 0; start < n; start += chunk) {
    KVC_RETURN_IF_ERROR(CheckCancelled(in));
    int64_t len = std::min(chunk, n - start);
    auto t0 = std::chrono::steady_clock::now();
    torch::Tensor pos = torch::arange(first_position + start, first_position + start + len, on_device);
    KVC_RETURN_IF_ERROR(in.model->Forward(all.narrow(0, start, len), pos, cache).status());
    stats->chunk_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return absl::OkStatus();
}

absl::StatusOr<KvCache> MethodBase::ContextCache(const CompressionInput& in, int64_t chunk,
                                                  CompressionStats* stats) const {
  if (in.prefilled == nullptr) {
    KvCache cache = in.model->NewCache();
    KVC_RETURN_IF_ERROR(Prefill(in, in.context, 0, chunk, cache, stats));
    cache.set_next_position(static_cast<int64_t>(in.context.size()));
    return cache;
  }
  KVC_RETURN_IF_ERROR(CheckCancelled(in));
  auto t0 = std::chrono::steady_clock::now();
  const KvCache& source = *in.prefilled;
  const int64_t n = source.length();
  torch::Tensor indices = torch::arange(n, torch::TensorOptions().dtype(torch::kInt64).device(source.shape().device));
  for (int64_t l = 0; l < source.num_layers(); ++l) {
    if (!torch::equal(source.RotaryPositions(l), indices.unsqueeze(0).expand({source.shape().kv_heads, n}))) {
      return absl::InvalidArgumentError(absl::StrCat("prefilled: the keys of layer ", l,
                                                     " are not at rotary positions 0..", n - 1));
    }
  }
  KVC_ASSIGN_OR_RETURN(KvCache cache, CopyCache(source));
  // Entries are identified by their index in the context (a composition's positions restart in every
  // part), and each key carries that index as its rotary position: the layout of a plain prefill.
  cache.SetPositions(0, indices);
  cache.set_key_rotation(KeyRotation::kOriginal);
  cache.set_next_position(n);
  if (stats != nullptr) {
    stats->chunk_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return cache;
}

CompressionResult MethodBase::Finish(KvCache cache, CompressionStats stats) const {
  stats.tokens_out = 0;
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    for (int64_t len : cache.HeadLengths(l)) stats.tokens_out = std::max(stats.tokens_out, len);
  }
  stats.peak_cache_entries = std::max(stats.peak_cache_entries, cache.peak_length());
  stats.kept_positions.clear();
  for (int64_t l = 0; l < cache.num_layers(); ++l) stats.kept_positions.push_back(cache.Positions(l).to(torch::kCPU).clone());
  return CompressionResult{std::move(cache), std::move(stats)};
}

absl::StatusOr<std::unique_ptr<CompressionMethod>> CreateCompressionMethod(const CompressionSpec& spec) {
  if (spec.ratio != 0 && spec.target_tokens != 0) {
    return absl::InvalidArgumentError("ratio and target_tokens are exclusive: give one budget");
  }
  if (spec.ratio != 0 && !(spec.ratio >= 1)) {
    return absl::OutOfRangeError(absl::StrCat("ratio: ", spec.ratio, " must be >= 1 (original/kept; 8 means 8x)"));
  }
  if (spec.target_tokens < 0) {
    return absl::OutOfRangeError(absl::StrCat("target_tokens: ", spec.target_tokens, " must be >= 1"));
  }
  const std::string& m = spec.method;
  if (m != "none" && spec.ratio == 0 && spec.target_tokens == 0) {
    return absl::InvalidArgumentError(absl::StrCat("ratio or target_tokens is required for method ", m));
  }
  if (m == "finch") return MakeFinch(spec);
  if (m == "focus" || m == "novelty" || m == "recall") return MakeFocus(spec);
  if (m == "snapkv") return MakeSnapKv(spec);
  if (m == "streaming_llm") return MakeStreamingLlm(spec);
  if (m == "knorm") return MakeKnorm(spec);
  if (m == "random") return MakeRandom(spec);
  if (m == "truncate") return MakeTruncate(spec);
  if (m == "none") return MakeNone(spec);
  return absl::InvalidArgumentError(absl::StrCat(
      "method: unknown method '", m, "' (known: focus, finch, snapkv, novelty, streaming_llm, knorm, random, truncate, none)"));
}

}  // namespace kvc
