// none: the full cache, the baseline every method is measured against.
#include "compressor/methods/method_base.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

class NoneMethod : public MethodBase {
 public:
  NoneMethod(CompressionSpec spec, int64_t chunk) : MethodBase(std::move(spec)), chunk_(chunk) {}
  bool query_aware() const override { return false; }

  absl::StatusOr<CompressionResult> DoCompress(const CompressionInput& in) const override {
    CompressionStats stats;
    stats.tokens_in = ContextLength(in);
    KVC_ASSIGN_OR_RETURN(KvCache cache, ContextCache(in, chunk_, &stats));
    return Finish(std::move(cache), std::move(stats));
  }

 private:
  int64_t chunk_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CompressionMethod>> MakeNone(const CompressionSpec& spec) {
  KVC_ASSIGN_OR_RETURN(MethodOptions o, MethodOptions::Parse(spec.method, spec.options, {"chunk_tokens"}));
  KVC_ASSIGN_OR_RETURN(int64_t chunk, o.Int("chunk_tokens", kAutoPrefillChunk, 1, 1 << 20));
  return std::unique_ptr<CompressionMethod>(new NoneMethod(spec, chunk));
}

}  // namespace kvc
