// streaming_llm: attention sinks (the first n_sink tokens) plus the most recent tokens.
#include "compressor/methods/scored_method.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

class StreamingLlm : public ScoredMethod {
 public:
  StreamingLlm(CompressionSpec spec, int64_t chunk, int64_t sinks) : ScoredMethod(std::move(spec), chunk), sinks_(sinks) {}

 protected:
  torch::Tensor Score(const KvCache& cache, int64_t layer, int64_t k) const override {
    const int64_t n = cache.length(layer);
    // The same layout as kvpress's StreamingLLMPress: ones, with the pruned span after the sinks zeroed.
    torch::Tensor s = torch::ones({cache.shape().kv_heads, n}, torch::kFloat32);
    int64_t pruned = n - k;
    int64_t sinks = std::min(sinks_, n);
    if (pruned > 0) s.narrow(1, sinks, std::min(pruned, n - sinks)).zero_();
    return s;
  }

 private:
  int64_t sinks_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeStreamingLlm(const CompressionSpec& spec) {
  KVC_ASSIGN_OR_RETURN(MethodOptions o, MethodOptions::Parse(spec.method, spec.options, {"chunk_tokens", "n_sink"}));
  KVC_ASSIGN_OR_RETURN(int64_t chunk, o.Int("chunk_tokens", kAutoPrefillChunk, 1, 1 << 20));
  KVC_ASSIGN_OR_RETURN(int64_t sinks, o.Int("n_sink", 4, 0, 1 << 20));
  return std::unique_ptr<CompressionMethod>(new StreamingLlm(spec, chunk, sinks));
}

}  // namespace kvc
