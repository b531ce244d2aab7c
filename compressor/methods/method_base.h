// Shared plumbing of the compression methods: input checks, the budget, chunked prefill with cancellation
// and timing, and the final statistics. Each method lives in its own file and only adds its selection rule.
#ifndef KVC_COMPRESSOR_METHODS_METHOD_BASE_H_
#define KVC_COMPRESSOR_METHODS_METHOD_BASE_H_

#include <memory>
#include <string>
#include <vector>

#include "compressor/methods/compression.h"
#include "compressor/methods/options.h"

namespace kvc {

class MethodBase : public CompressionMethod {
 public:
  const std::string& name() const override { return spec_.method; }
  // Checks the input, then runs DoCompress in inference mode with LibTorch errors turned into statuses.
  absl::StatusOr<CompressionResult> Compress(const CompressionInput& in) const final;

 protected:
  explicit MethodBase(CompressionSpec spec) : spec_(std::move(spec)) {}
  virtual absl::StatusOr<CompressionResult> DoCompress(const CompressionInput& in) const = 0;

  // Model present, context non-empty, protected prefix inside the context, token ids (those given) in the
  // vocabulary, a suffix for query-aware methods. A prefilled context must have been made by the model
  // (fingerprint and shape; else FAILED_PRECONDITION) and hold the same number of entries in every layer,
  // as many as the token ids when both are given.
  absl::Status CheckInput(const CompressionInput& in) const;
  // C: the number of context tokens, prefilled->length() when the context was prefilled.
  static int64_t ContextLength(const CompressionInput& in);
  // Context tokens to keep under the spec, never below the protected prefix.
  absl::StatusOr<int64_t> Budget(const CompressionInput& in, int64_t scored_len) const;
  // The uncompressed KV of the whole context, ready to score and select from: C entries per layer with keys
  // at rotary positions 0..C-1, Positions() 0..C-1, key_rotation kOriginal, next_position C. Either a fresh
  // copy of in.prefilled (INVALID_ARGUMENT when its keys are not at rotary positions 0..C-1; one
  // chunk_seconds entry) or the context ids prefilled in chunks of `chunk`. The caller owns the result, so
  // it may run the suffix on top of it: in.prefilled itself is never written to.
  absl::StatusOr<KvCache> ContextCache(const CompressionInput& in, int64_t chunk, CompressionStats* stats) const;
  // Runs ids at positions [first_position, ...) into `cache` in chunks, polling keep_going between them.
  // chunk == kAutoPrefillChunk picks AutoPrefillChunk(model).
  absl::Status Prefill(const CompressionInput& in, const std::vector<int64_t>& ids, int64_t first_position,
                       int64_t chunk, KvCache& cache, CompressionStats* stats) const;
  absl::Status CheckCancelled(const CompressionInput& in) const;
  // How many of the k_ctx kept tokens a query-guided prefill keeps once it has read `seen` of the C context
  // tokens: the count grows with the text, so that the last chunk lands exactly on the budget.
  static int64_t KeptSoFar(int64_t k_ctx, int64_t seen, int64_t C);
  // The chunk of a query-guided prefill (Finch's loop): `chunk_tokens`, which must fit the model window
  // (OUT_OF_RANGE), or the whole context when it was prefilled (then scored as one chunk).
  static absl::StatusOr<int64_t> QueryGuidedChunk(const CompressionInput& in, int64_t chunk_tokens);
  // Fills tokens_out, kept_positions and peak_cache_entries from the final cache.
  CompressionResult Finish(KvCache cache, CompressionStats stats) const;

  CompressionSpec spec_;
};

// The chunk_tokens fallback of the non-chunked methods: AutoPrefillChunk(model) at Compress time.
inline constexpr int64_t kAutoPrefillChunk = 0;

// Factories, one per method file.
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeFinch(const CompressionSpec& spec);
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeFocus(const CompressionSpec& spec);
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeSnapKv(const CompressionSpec& spec);
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeStreamingLlm(const CompressionSpec& spec);
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeKnorm(const CompressionSpec& spec);
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeRandom(const CompressionSpec& spec);
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeTruncate(const CompressionSpec& spec);
absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeNone(const CompressionSpec& spec);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_METHODS_METHOD_BASE_H_
