// Mixed traffic against one kvc-server: N clients, each on its own connection and thread, call a weighted
// mix of RPCs back to back for a fixed time: Compress answered from the store (a pool of finch requests
// compressed once before the clock starts), Compress on new text (a miss: prefill, compression and a
// store Put), Generate of a few tokens from a pooled cache, CacheService Stat / Get / List and
// GetModelInfo. It reports throughput and latency per RPC and every non-OK status by code.
// RESOURCE_EXHAUSTED is how the server's admission control answers when its queue is full: under
// overload it is an expected outcome, counted like the others.
//
// Thread safety: RunMixedLoad starts and joins its own threads; `new_channel` is called from them.
#ifndef KVC_BENCH_SERVICE_MIXED_LOAD_BENCH_H_
#define KVC_BENCH_SERVICE_MIXED_LOAD_BENCH_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/service/latency.h"

namespace kvc::bench {

enum class Rpc { kCompressHit, kCompressMiss, kGenerate, kStat, kGet, kList, kModelInfo };
inline constexpr int kRpcKinds = 7;

const char* RpcName(Rpc rpc);

struct MixedLoadOptions {
  int clients = 64;
  absl::Duration duration = absl::Seconds(60);
  absl::Duration timeout = absl::Seconds(30);  // each call's deadline
  // Relative weights of the RPCs, in the order of Rpc.
  std::array<int, kRpcKinds> weights = {35, 5, 15, 10, 10, 10, 15};
  int hit_pool = 16;           // distinct Compress requests answered from the store
  int document_words = 150;    // per Compress document
  int generate_tokens = 4;     // max_tokens of each Generate
  uint64_t seed = 1;
};

struct RpcStats {
  int64_t calls = 0;               // finished calls, OK or not
  Latencies ok;                    // latencies of the OK ones
  std::map<std::string, int64_t> errors;  // gRPC code name -> count
  int64_t unexpected = 0;          // OK, but a hit where a miss was expected or the reverse
};

struct MixedLoadResult {
  std::array<RpcStats, kRpcKinds> rpcs;
  // Calls finished in each whole second of the run, all RPCs together: a stall of the server or of the
  // machine shows as seconds with few or none.
  std::vector<int64_t> per_second;
  // The same for the model RPCs only (Compress misses and Generate).
  std::vector<int64_t> model_per_second;
  double seconds = 0;  // from the start until the last client finished its last call
};

absl::StatusOr<MixedLoadResult> RunMixedLoad(const std::function<std::shared_ptr<grpc::Channel>()>& new_channel,
                                             const MixedLoadOptions& options);

// Markdown: the mix, a table per RPC (calls/s, p50, p90, p99, errors) with a total row, and the error
// counts by code.
std::string FormatMixedLoad(const MixedLoadResult& result, const MixedLoadOptions& options);

// The canonical name of a gRPC status code ("RESOURCE_EXHAUSTED").
std::string CodeName(grpc::StatusCode code);

}  // namespace kvc::bench

#endif  // KVC_BENCH_SERVICE_MIXED_LOAD_BENCH_H_
