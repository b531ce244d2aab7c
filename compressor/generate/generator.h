// The generator: decodes an answer from one or more stored KV caches plus a suffix (the query and the
// generation prompt), with greedy or sampled decoding, stop strings, EOS, cancellation and streaming.
//
//   KVC_ASSIGN_OR_RETURN(auto gen, Generator::Create(&model, &tokenizer, {}));
//   GenerationRequest req;
//   req.caches = {&doc_cache};
//   req.suffix = query_ids;
//   req.sampling.max_tokens = 64;
//   KVC_ASSIGN_OR_RETURN(GenerationResult r, gen->Generate(req, [](const GenerationPiece& p) {
//     std::cout << p.text;
//     return true;  // false stops generation with CANCELLED
//   }));
//
// No gRPC, no store: the service resolves cache ids into KvCache objects and calls Generate on its own
// worker threads.
//
// Ownership: the Generator borrows the model and the tokenizer, which must outlive it. A request borrows its
// caches for the duration of Generate and never modifies them: decoding runs on a private copy.
// Thread safety: the Generator is immutable after Create. Generate may run concurrently from several
// threads, one request per call; concurrent calls may even share input caches, since those are only read.
// Callbacks (on_piece, keep_going) run on the calling thread.
#ifndef KVC_COMPRESSOR_GENERATE_GENERATOR_H_
#define KVC_COMPRESSOR_GENERATE_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compressor/kv/kv_cache.h"
#include "compressor/model/llama_model.h"
#include "compressor/tokenizer/tokenizer.h"

namespace kvc {

struct GeneratorOptions {
  // The suffix is prefilled in chunks of this many tokens (bounds the attention scratch memory).
  int64_t prefill_chunk_tokens = 512;
};

struct SamplingOptions {
  // Upper bound on generated tokens, >= 1. The token that ends generation (EOS, or the one completing a stop
  // string) counts.
  int64_t max_tokens = 256;
  // 0: greedy (argmax; ties go to the lowest id, as GenerateGreedy). > 0: logits are divided by it before
  // the softmax.
  double temperature = 0.0;
  // Sampling only: keep the k most likely tokens (0: all).
  int64_t top_k = 0;
  // Sampling only: keep the smallest set of most likely tokens whose probability reaches top_p, in (0, 1]
  // (1: all). Applied after top_k.
  double top_p = 1.0;
  // Sampling only: the same seed, model, caches and suffix give the same tokens.
  uint64_t seed = 0;
  // Generation stops as soon as the decoded text contains one of these (non-empty) strings; the stop string
  // and anything after it are left out of the text.
  std::vector<std::string> stop;
  // Stop at an end-of-sequence token: the tokenizer's eos and the model config's eos ids.
  bool stop_on_eos = true;
};

struct GenerationRequest {
  // One or more caches of this generator's model, borrowed. Several are composed in order (ComposeCaches:
  // re-rotated to consecutive positions) and decoding continues after the last entry; a single cache is used
  // as it is, continuing at its next_position().
  std::vector<const KvCache*> caches;
  // Tokens fed before decoding: the query and the generation prompt. Must not be empty, since the first
  // token is sampled from the logits of its last token.
  std::vector<int64_t> suffix;
  SamplingOptions sampling;
  // Polled before the suffix prefill and between decode steps (never during a forward pass); returning
  // false ends the request with CANCELLED. Empty: never cancelled.
  std::function<bool()> keep_going;
};

// One generated token, as streamed.
struct GenerationPiece {
  int64_t token_id = 0;
  // The text this token releases, possibly empty: special tokens have none, an incomplete UTF-8 character
  // waits for the token that completes it, and text that could be the start of a stop string is held back
  // until later tokens show it is not (or, at the end of generation, released). Concatenating the pieces'
  // text gives GenerationResult::text exactly; no part of a stop string is ever streamed.
  std::string text;
  // 0-based position of the token among the generated ones.
  int64_t index = 0;
};

struct GenerationTimings {
  double compose_seconds = 0;   // copying or composing the caches
  double prefill_seconds = 0;   // feeding the suffix
  double decode_seconds = 0;    // from the first generated token to the last
  double time_to_first_token_seconds = 0;  // from the start of Generate to the first token
  double mean_seconds_per_token = 0;       // decode_seconds / (tokens - 1); 0 for a single token
};

struct GenerationResult {
  // Every generated token, including the EOS or the stop-string token that ended generation.
  std::vector<int64_t> tokens;
  // Decoded text without special tokens, cut before the first stop string.
  std::string text;
  // "length" (max_tokens reached), "eos" (an end-of-sequence token) or "stop" (a stop string).
  std::string finish_reason;
  int64_t cached_tokens = 0;  // cache entries attended to (after composition)
  int64_t prompt_tokens = 0;  // suffix tokens fed
  GenerationTimings timings;
};

class Generator {
 public:
  // `model` and `tokenizer` are borrowed and must outlive the Generator. INVALID_ARGUMENT for null pointers
  // or bad options.
  static absl::StatusOr<std::unique_ptr<Generator>> Create(const LlamaModel* model, const Tokenizer* tokenizer,
                                                           GeneratorOptions options = {});

  // Decodes one request. on_piece (optional) receives every generated token in order; returning false stops
  // with CANCELLED. Errors:
  //   INVALID_ARGUMENT   no caches, a null cache, empty suffix ("prompt: empty"), suffix ids outside the model
  //                      vocabulary, or a bad sampling value (the message names the field);
  //   FAILED_PRECONDITION a cache without a model fingerprint, made by another model, or shaped for another
  //                      model (the message names the cache's index);
  //   OUT_OF_RANGE       cache + suffix + max_tokens would run past the model's max position embeddings;
  //   CANCELLED          keep_going or on_piece said stop;
  //   RESOURCE_EXHAUSTED the device or host ran out of memory.
  // Tokens already streamed before an error stay streamed; the result is only returned on success.
  absl::StatusOr<GenerationResult> Generate(const GenerationRequest& request,
                                            const std::function<bool(const GenerationPiece&)>& on_piece = {}) const;

  const LlamaModel& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  Generator(const LlamaModel* model, const Tokenizer* tokenizer, GeneratorOptions options);

  absl::Status Validate(const GenerationRequest& request) const;
  absl::StatusOr<GenerationResult> GenerateImpl(const GenerationRequest& request,
                                                const std::function<bool(const GenerationPiece&)>& on_piece) const;

  const LlamaModel* model_;
  const Tokenizer* tokenizer_;
  GeneratorOptions options_;
  std::vector<int64_t> eos_ids_;  // sorted, unique
  // Ids at or past this are never generated: rows a model pads its vocabulary with have no text.
  int64_t sampleable_vocab_ = 0;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_GENERATE_GENERATOR_H_
