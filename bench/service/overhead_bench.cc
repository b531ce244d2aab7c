#include "bench/service/overhead_bench.h"

#include <chrono>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tests/support/kvc_test_client.h"

namespace kvc::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), absl::StrCat(what, ": ", s.error_message()));
}

void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

kvc::v1::CompressRequest NoneRequest(int words) {
  kvc::v1::CompressRequest r;
  r.add_documents()->set_text(kvc::testing::FillerText(words, 20240601));
  r.mutable_spec()->set_method("none");
  return r;
}

struct Sample {
  double round_trip = 0;
  kvc::v1::CompressResponse response;
};

absl::StatusOr<Sample> GrpcCompress(kvc::v1::Compressor::Stub& stub, kvc::v1::CacheService::Stub& cache,
                                    const kvc::v1::CompressRequest& request, absl::Duration timeout) {
  Sample s;
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  const Clock::time_point t0 = Clock::now();
  grpc::Status status = stub.Compress(&ctx, request, &s.response);
  s.round_trip = Since(t0);
  if (absl::Status st = FromGrpc(status, "Compress over gRPC"); !st.ok()) return st;
  if (s.response.cache_hit()) return absl::InternalError("Compress over gRPC was a cache hit; the delete failed");
  grpc::ClientContext del_ctx;
  SetDeadline(del_ctx, timeout);
  kvc::v1::DeleteCacheRequest del;
  del.set_cache_id(s.response.cache_id());
  kvc::v1::DeleteCacheResponse del_out;
  if (absl::Status st = FromGrpc(cache.Delete(&del_ctx, del, &del_out), "CacheService.Delete"); !st.ok()) return st;
  return s;
}

absl::StatusOr<Sample> LocalCompress(const InProcessCompressor& local, const kvc::v1::CompressRequest& request) {
  Sample s;
  const Clock::time_point t0 = Clock::now();
  absl::StatusOr<kvc::v1::CompressResponse> response = local.Compress(request);
  s.round_trip = Since(t0);
  if (!response.ok()) return response.status();
  s.response = *std::move(response);
  if (s.response.cache_hit()) return absl::InternalError("in-process Compress was a cache hit; the delete failed");
  if (absl::Status st = local.store().Delete(s.response.cache_id()); !st.ok()) return st;
  return s;
}

// A cache left by an earlier run against the same store would make the first call a hit.
absl::Status ForgetStored(kvc::v1::Compressor::Stub& stub, kvc::v1::CacheService::Stub& cache,
                          const InProcessCompressor& local, const kvc::v1::CompressRequest& request,
                          absl::Duration timeout) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  kvc::v1::CompressResponse out;
  if (absl::Status st = FromGrpc(stub.Compress(&ctx, request, &out), "Compress over gRPC"); !st.ok()) return st;
  grpc::ClientContext del_ctx;
  SetDeadline(del_ctx, timeout);
  kvc::v1::DeleteCacheRequest del;
  del.set_cache_id(out.cache_id());
  kvc::v1::DeleteCacheResponse del_out;
  if (absl::Status st = FromGrpc(cache.Delete(&del_ctx, del, &del_out), "CacheService.Delete"); !st.ok()) return st;
  absl::StatusOr<kvc::v1::CompressResponse> local_out = local.Compress(request);
  if (!local_out.ok()) return local_out.status();
  if (local_out->cache_id() != out.cache_id()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the server and the in-process path compute different cache ids (", out.cache_id(), " vs ",
        local_out->cache_id(), "): they do not serve the same model"));
  }
  return local.store().Delete(local_out->cache_id());
}

}  // namespace

absl::StatusOr<OverheadResult> RunOverhead(kvc::v1::Compressor::Stub& compressor, kvc::v1::CacheService::Stub& cache,
                                           const InProcessCompressor& local, const OverheadOptions& options) {
  const kvc::v1::CompressRequest request = NoneRequest(options.document_words);
  if (absl::Status st = ForgetStored(compressor, cache, local, request, options.timeout); !st.ok()) return st;

  OverheadResult result;
  for (int i = 0; i < options.warmup + options.iterations; ++i) {
    // Alternating which path goes first keeps any effect of the order (warm caches, the other path's
    // background work) out of the difference.
    absl::StatusOr<Sample> remote, in_process;
    if (i % 2 == 0) {
      remote = GrpcCompress(compressor, cache, request, options.timeout);
      in_process = LocalCompress(local, request);
    } else {
      in_process = LocalCompress(local, request);
      remote = GrpcCompress(compressor, cache, request, options.timeout);
    }
    if (!remote.ok()) return remote.status();
    if (!in_process.ok()) return in_process.status();
    if (i < options.warmup) continue;
    const double server_total = remote->response.info().timings().total_seconds();
    result.grpc.Add(remote->round_trip);
    result.in_process.Add(in_process->round_trip);
    result.paired.Add(remote->round_trip - in_process->round_trip);
    result.server_total.Add(server_total);
    result.grpc_minus_server.Add(remote->round_trip - server_total);
    const double local_total = in_process->response.info().timings().total_seconds();
    result.in_process_total.Add(local_total);
    result.in_process_minus_total.Add(in_process->round_trip - local_total);
    auto steps = [](const kvc::v1::Timings& t, Latencies* into) {
      const double v[6] = {t.tokenize_seconds(),  t.queue_seconds(),     t.prefill_seconds(),
                           t.compress_seconds(), t.serialize_seconds(), t.store_seconds()};
      double sum = 0;
      for (int k = 0; k < 6; ++k) {
        into[k].Add(v[k]);
        sum += v[k];
      }
      into[6].Add(t.total_seconds() - sum);
    };
    steps(remote->response.info().timings(), result.grpc_steps);
    steps(in_process->response.info().timings(), result.in_process_steps);
    result.tokens_in = remote->response.info().tokens_in();
    result.cache_bytes = remote->response.info().bytes();
  }
  for (int i = 0; i < options.model_info_calls; ++i) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, options.timeout);
    kvc::v1::ModelInfo info;
    const Clock::time_point t0 = Clock::now();
    grpc::Status status = compressor.GetModelInfo(&ctx, kvc::v1::GetModelInfoRequest(), &info);
    const double rt = Since(t0);
    if (absl::Status st = FromGrpc(status, "GetModelInfo"); !st.ok()) return st;
    result.model_info.Add(rt);
  }
  return result;
}

std::string FormatOverhead(const OverheadResult& r, const OverheadOptions& o) {
  const LatencySummary g = r.grpc.Summary(), p = r.in_process.Summary(), d = r.grpc_minus_server.Summary(),
                       pd = r.paired.Summary(), ld = r.in_process_minus_total.Summary(),
                       st = r.server_total.Summary(), pt = r.in_process_total.Summary(),
                       mi = r.model_info.Summary();
  std::string out = absl::StrFormat(
      "### gRPC overhead: Compress, method none, %d tokens in, %d-byte cache; %d timed calls per path (%d warm-up)\n\n",
      r.tokens_in, r.cache_bytes, o.iterations, o.warmup);
  absl::StrAppend(&out, "| path | p50 ms | p90 ms | p99 ms | mean ms | max ms |\n|---|---:|---:|---:|---:|---:|\n");
  auto row = [&](const std::string& name, const LatencySummary& s) {
    absl::StrAppend(&out, "| ", name, " | ", Ms(s.p50_ms), " | ", Ms(s.p90_ms), " | ", Ms(s.p99_ms), " | ",
                    Ms(s.mean_ms), " | ", Ms(s.max_ms), " |\n");
  };
  row("gRPC round trip (client-side)", g);
  row("in-process call", p);
  row("server's own total_seconds (gRPC path)", st);
  row("in-process total_seconds", pt);
  row("per iteration: gRPC - in-process (adjacent calls)", pd);
  row("per call: gRPC round trip - server total_seconds", d);
  row("per call: in-process call - its total_seconds", ld);
  row("GetModelInfo round trip (no work)", mi);
  absl::StrAppend(&out, "\nWhere the time goes (info.timings, p50 / p99 ms):\n\n| step | gRPC path | in-process |\n"
                        "|---|---:|---:|\n");
  const char* const steps[OverheadResult::kSteps] = {"tokenize", "queue",  "prefill", "compress",
                                                     "serialize", "store", "rest of total_seconds (hand-offs)"};
  for (int k = 0; k < OverheadResult::kSteps; ++k) {
    const LatencySummary a = r.grpc_steps[k].Summary(), b = r.in_process_steps[k].Summary();
    absl::StrAppend(&out, "| ", steps[k], " | ", Ms(a.p50_ms), " / ", Ms(a.p99_ms), " | ", Ms(b.p50_ms), " / ",
                    Ms(b.p99_ms), " |\n");
  }
  const double p50_overhead = g.p50_ms - p.p50_ms, p99_overhead = g.p99_ms - p.p99_ms;
  absl::StrAppend(
      &out, "\n",
      absl::StrFormat("- overhead, p50(gRPC) - p50(in-process): %.3f ms (ratio %.3f); p99: %.3f ms (ratio %.3f)\n",
                      p50_overhead, p.p50_ms > 0 ? g.p50_ms / p.p50_ms : 0.0, p99_overhead,
                      p.p99_ms > 0 ? g.p99_ms / p.p99_ms : 0.0),
      absl::StrFormat("- overhead, median of the per-iteration differences: %.3f ms\n", pd.p50_ms),
      absl::StrFormat("- overhead outside the work both paths share (total_seconds: tokenize to stored), "
                      "p50(round trip - total_seconds), gRPC - in-process: %.3f - %.3f = %.3f ms; p99: %.3f - %.3f = "
                      "%.3f ms\n",
                      d.p50_ms, ld.p50_ms, d.p50_ms - ld.p50_ms, d.p99_ms, ld.p99_ms, d.p99_ms - ld.p99_ms),
      absl::StrFormat("- target overhead <= 1 ms at p50 (p50(gRPC) - p50(in-process)): %s\n",
                      p50_overhead <= 1.0 ? "met" : "NOT met"));
  return out;
}

}  // namespace kvc::bench
