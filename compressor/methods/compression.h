// The compression interface: a method takes the model, the context tokens ([prefix][documents]), the
// suffix tokens (query + generation prompt) and a spec, and returns a compressed KvCache plus statistics.
//
// Semantics of every method are in DESIGN §4. The protected prefix is always kept. Unknown option names
// are errors, never ignored.
//
// Thread safety: methods are immutable after creation; Compress may run concurrently on distinct inputs
// (each call owns its caches), sharing the model.
#ifndef KVC_COMPRESSOR_METHODS_COMPRESSION_H_
#define KVC_COMPRESSOR_METHODS_COMPRESSION_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "compressor/kv/kv_cache.h"
#include "compressor/model/llama_model.h"

namespace kvc {

struct CompressionSpec {
  std::string method = "focus";
  // Budget: exactly one of ratio (original/kept, >= 1; 8 means 8x) or target_tokens (> 0).
  double ratio = 0;
  int64_t target_tokens = 0;
  // Method options by name, as text ("chunk_tokens" -> "512"); validated by the method.
  std::map<std::string, std::string> options;
};

struct CompressionInput {
  const LlamaModel* model = nullptr;
  std::vector<int64_t> context;    // [prefix][documents]
  int64_t protected_prefix = 0;    // leading context tokens that are always kept
  std::vector<int64_t> suffix;     // the query (and generation prompt); may be empty for query-agnostic methods
  // Where the context's words and sentences start (TextBoundaries of the context ids: one flag byte per
  // context token), for methods that keep whole spans; empty when unknown. Other methods ignore it.
  std::vector<uint8_t> boundaries;
  // Polled between chunks; returning false cancels with CANCELLED.
  std::function<bool()> keep_going;
  // The context's KV when it was already computed (e.g. composed from precomputed full caches): one
  // uncompressed entry per context token in every layer, with rotary positions 0..C-1. Methods select from
  // it instead of prefilling the context, and `context` may then be empty: C = prefilled->length().
  // Query-aware methods still run the suffix on top of it (on a copy) to score it; Finch treats it as one
  // chunk. SnapKV's window can then only hold suffix rows, so it needs a suffix even with a fixed window;
  // truncate keeps the head and tail entries re-rotated. Kept positions are indices 0..C-1 of this
  // context. Made by another model or shaped otherwise: FAILED_PRECONDITION. Borrowed for the call and
  // never modified.
  const KvCache* prefilled = nullptr;
};

struct CompressionStats {
  int64_t tokens_in = 0;   // context tokens
  int64_t tokens_out = 0;  // kept entries of the fullest head (including kept query tokens in kvpress parity mode)
  // Per layer [kv_heads, slots] original positions, ascending; -1 marks the padding of a head that keeps fewer
  // entries than the layer's longest (head-adaptive budgets), and layers may differ in slots.
  std::vector<torch::Tensor> kept_positions;
  std::vector<double> chunk_seconds;           // wall time per prefill chunk (one entry when not chunked)
  int64_t peak_cache_entries = 0;              // largest cache length held at any time
};

struct CompressionResult {
  KvCache cache;  // next_position() is where the suffix continues
  CompressionStats stats;
};

class CompressionMethod {
 public:
  virtual ~CompressionMethod() = default;
  virtual const std::string& name() const = 0;
  // Whether the suffix changes what is kept (it must then be non-empty).
  virtual bool query_aware() const = 0;
  // INVALID_ARGUMENT / OUT_OF_RANGE for inputs that cannot be compressed with this spec, CANCELLED when
  // keep_going returns false, RESOURCE_EXHAUSTED on out-of-memory.
  virtual absl::StatusOr<CompressionResult> Compress(const CompressionInput& input) const = 0;
};

// The default chunk_tokens of the methods other than Finch, whose prefill chunk sets how often cancellation
// is checked and how much memory activations take, but not what is kept: 512 tokens on the CPU. On CUDA a
// chunk costs a fixed ~15 ms of kernel launches and synchronization on a small model, so chunks are as long
// as the model window, up to 8192 tokens.
int64_t AutoPrefillChunk(const LlamaModel& model);

// Validates the spec (method name, budget fields, option names and values) and builds the method.
absl::StatusOr<std::unique_ptr<CompressionMethod>> CreateCompressionMethod(const CompressionSpec& spec);

}  // namespace kvc

#endif  // KVC_COMPRESSOR_METHODS_COMPRESSION_H_
