// The gRPC overhead of Compress: the same request (method "none", one document) timed as a round trip
// through a kvc-server over loopback and as an InProcessCompressor call, interleaved call by call so that
// both paths see the same machine load. Every timed call does the full work (tokenize, prefill, encode,
// store Put): the stored cache is deleted after each call, on both paths, outside the timed region.
// GetModelInfo round trips give the floor of a unary call with no work behind it.
//
// Thread safety: RunOverhead uses the stub and the compressor from the calling thread only.
#ifndef KVC_BENCH_SERVICE_OVERHEAD_BENCH_H_
#define KVC_BENCH_SERVICE_OVERHEAD_BENCH_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/service/in_process_compressor.h"
#include "bench/service/latency.h"
#include "proto/kvc/v1/cache.grpc.pb.h"
#include "proto/kvc/v1/compressor.grpc.pb.h"

namespace kvc::bench {

struct OverheadOptions {
  int iterations = 1000;     // timed calls per path
  int warmup = 50;           // untimed calls per path first
  int document_words = 200;  // words of the document (about 1.3 tokens per word with tiny_chat)
  int model_info_calls = 1000;
  absl::Duration timeout = absl::Seconds(60);  // each call's deadline
};

struct OverheadResult {
  Latencies grpc;               // client-side round trip of Compress
  Latencies in_process;         // InProcessCompressor::Compress, call to return
  Latencies paired;             // per iteration: gRPC round trip - the adjacent in-process call
  Latencies grpc_minus_server;  // per call: round trip - the server's own info.timings.total_seconds
  Latencies in_process_minus_total;  // per call: in-process call - its own info.timings.total_seconds
  Latencies server_total;       // info.timings.total_seconds reported by the server
  Latencies in_process_total;   // the same field, filled in-process
  Latencies model_info;         // GetModelInfo round trip
  // info.timings, per path: tokenize, queue, prefill, compress, serialize, store, and what total_seconds
  // holds beyond them (the hand-offs between the executor and the scheduler).
  static constexpr int kSteps = 7;
  Latencies grpc_steps[kSteps], in_process_steps[kSteps];
  int64_t tokens_in = 0;        // context tokens per call (prefix + document)
  int64_t cache_bytes = 0;      // the stored .kvc's size
};

absl::StatusOr<OverheadResult> RunOverhead(kvc::v1::Compressor::Stub& compressor, kvc::v1::CacheService::Stub& cache,
                                           const InProcessCompressor& local, const OverheadOptions& options);

// Markdown: the per-path table, the p50 and p99 differences and the verdict against the 1 ms target.
std::string FormatOverhead(const OverheadResult& result, const OverheadOptions& options);

}  // namespace kvc::bench

#endif  // KVC_BENCH_SERVICE_OVERHEAD_BENCH_H_
