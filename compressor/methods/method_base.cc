#include "compressor/methods/method_base.h"

#include <chrono>

#include "absl/strings/str_cat.h"
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

absl::Status MethodBase::CheckInput(const CompressionInput& in) const {
  if (in.model == nullptr) return absl::InvalidArgumentError("no model given");
  if (in.context.empty()) return absl::InvalidArgumentError("context: empty, nothing to compress");
  if (in.protected_prefix < 0 || in.protected_prefix > static_cast<int64_t>(in.context.size())) {
    return absl::OutOfRangeError(absl::StrCat("protected_prefix: ", in.protected_prefix,
                                              " is outside the context of ", in.context.size(), " tokens"));
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

absl::StatusOr<int64_t> MethodBase::Budget(const CompressionInput& in, int64_t scored_len) const {
  KVC_ASSIGN_OR_RETURN(int64_t k, KeptTokens(spec_.ratio, spec_.target_tokens, scored_len));
  return std::max(k, std::min(in.protected_prefix, scored_len));
}

absl::Status MethodBase::CheckCancelled(const CompressionInput& in) const {
  if (in.keep_going && !in.keep_going()) return absl::CancelledError("compression cancelled");
  return absl::OkStatus();
}

absl::Status MethodBase::Prefill(const CompressionInput& in, const std::vector<int64_t>& ids, int64_t first_position,
                                 int64_t chunk, KvCache& cache, CompressionStats* stats) const {
  const int64_t n = static_cast<int64_t>(ids.size());
  torch::Tensor all = torch::tensor(ids, torch::kInt64);
  for (int64_t start = 0; start < n; start += chunk) {
    KVC_RETURN_IF_ERROR(CheckCancelled(in));
    int64_t len = std::min(chunk, n - start);
    auto t0 = std::chrono::steady_clock::now();
    torch::Tensor pos = torch::arange(first_position + start, first_position + start + len, torch::kInt64);
    KVC_RETURN_IF_ERROR(in.model->Forward(all.narrow(0, start, len), pos, cache).status());
    stats->chunk_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return absl::OkStatus();
}

CompressionResult MethodBase::Finish(KvCache cache, CompressionStats stats) const {
  stats.tokens_out = cache.length();
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
  if (m == "snapkv") return MakeSnapKv(spec);
  if (m == "streaming_llm") return MakeStreamingLlm(spec);
  if (m == "knorm") return MakeKnorm(spec);
  if (m == "random") return MakeRandom(spec);
  if (m == "truncate") return MakeTruncate(spec);
  if (m == "none") return MakeNone(spec);
  return absl::InvalidArgumentError(absl::StrCat(
      "method: unknown method '", m, "' (known: finch, snapkv, streaming_llm, knorm, random, truncate, none)"));
}

}  // namespace kvc
