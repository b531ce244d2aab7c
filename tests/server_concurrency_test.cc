// End to end: 16 concurrent clients, each on its own connection, call a mix of every RPC against the real
// kvc-server binary for about 20 seconds. No call may fail, and the server's resident memory after a
// warm-up must stay within a fixed bound for the rest of the run.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/support/kvc_test_client.h"
#include "tests/support/server_process.h"
#include "tests/support/testdata.h"

namespace kvc::testing {
namespace {

constexpr int kClients = 16;
constexpr absl::Duration kWarmUp = absl::Seconds(6);
constexpr absl::Duration kRun = absl::Seconds(20);
// Allocator caches, gRPC buffers and the store's page cache stay well below this once warm; a per-request
// leak of even a few kB over thousands of calls does not.
#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer holds freed blocks in a quarantine (256 MiB by default) before reusing them, so the
// server's RSS climbs by up to that much without any leak; LeakSanitizer checks leaks at its exit instead.
constexpr int64_t kMaxGrowthBytes = int64_t{64 + 256} << 20;
#else
constexpr int64_t kMaxGrowthBytes = int64_t{64} << 20;
#endif

const char* const kQueries[] = {"What is the capital of France?", "Who wrote the report?",
                                "When does the meeting start?", "Where does the river flow?"};

v1::CompressRequest FinchRequest(int variant) {
  v1::CompressRequest r;
  r.add_documents()->set_text(FillerText(150, 500 + variant % 8));
  r.set_query(kQueries[variant % 4]);
  r.mutable_spec()->set_method("finch");
  r.mutable_spec()->set_ratio(4);
  (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "64";
  return r;
}

struct Errors {
  absl::Mutex mu;
  std::map<std::string, int> by_op_and_code;
  std::vector<std::string> first;
  void Add(const std::string& op, const grpc::Status& s) {
    absl::MutexLock lock(&mu);
    ++by_op_and_code[absl::StrCat(op, " ", s.error_code())];
    if (first.size() < 10) first.push_back(absl::StrCat(op, ": code ", s.error_code(), ": ", s.error_message()));
  }
};

TEST(ServerConcurrencyTest, SixteenClientsOnMixedRpcsWithoutErrorsAndWithStableMemory) {
  auto started = ServerProcess::Start({.args = {"--model", TestData("tiny_chat"), "--metrics-listen", "127.0.0.1:0"}});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  KvcStubs setup(server->NewChannel());

  // Caches the clients read and decode from: query-agnostic ones, two full ones, and finch variants.
  v1::PrecomputeRequest agnostic;
  for (int i = 0; i < 6; ++i) agnostic.add_documents()->set_text(FillerText(120, 600 + i));
  agnostic.set_mode(v1::PRECOMPUTE_MODE_QUERY_AGNOSTIC);
  agnostic.mutable_spec()->set_method("knorm");
  agnostic.mutable_spec()->set_ratio(2);
  v1::PrecomputeResponse agnostic_caches;
  {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    grpc::Status s = setup.compressor->Precompute(&ctx, agnostic, &agnostic_caches);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  v1::PrecomputeRequest full;
  for (int i = 0; i < 2; ++i) full.add_documents()->set_text(FillerText(100, 700 + i));
  full.set_mode(v1::PRECOMPUTE_MODE_FULL);
  v1::PrecomputeResponse full_caches;
  {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    grpc::Status s = setup.compressor->Precompute(&ctx, full, &full_caches);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  std::vector<std::string> cache_ids;
  for (const auto& r : agnostic_caches.results()) cache_ids.push_back(r.cache_id());

  Errors errors;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> calls{0};
  std::vector<std::atomic<int64_t>> per_op(10);
  std::atomic<int64_t> misses{0};
  const CallOptions opts{.timeout = std::chrono::milliseconds(60000)};

  auto client = [&](int c) {
    KvcStubs s(server->NewChannel());
    for (int64_t i = c; !stop.load(); i += kClients) {
      const int op = static_cast<int>(i % 10);
      const std::string& id = cache_ids[i % cache_ids.size()];
      grpc::Status status;
      const char* name = "";
      switch (op) {
        case 0: {  // a hit after the first round
          name = "compress-hit";
          grpc::ClientContext ctx;
          Configure(ctx, opts);
          v1::CompressResponse out;
          status = s.compressor->Compress(&ctx, FinchRequest(static_cast<int>(i / 10)), &out);
          break;
        }
        case 1: {  // a miss every time: new content
          name = "compress-miss";
          v1::CompressRequest r;
          r.add_documents()->set_text(absl::StrCat(FillerText(40, 10000 + i), " ", i));
          r.mutable_spec()->set_method("knorm");
          r.mutable_spec()->set_ratio(2);
          grpc::ClientContext ctx;
          Configure(ctx, opts);
          v1::CompressResponse out;
          status = s.compressor->Compress(&ctx, r, &out);
          if (status.ok() && out.cache_hit()) status = grpc::Status(grpc::StatusCode::INTERNAL, "test: unexpected hit");
          if (status.ok()) ++misses;
          break;
        }
        case 2:
        case 3: {
          name = "generate";
          v1::GenerateRequest r;
          r.add_cache_ids(id);
          r.set_query(kQueries[i % 4]);
          r.mutable_sampling()->set_max_tokens(8);
          GenerateResult g = Generate(*s.generator, r, opts);
          status = g.status;
          if (status.ok() && (g.usage_messages != 1 || !g.usage_last)) {
            status = grpc::Status(grpc::StatusCode::INTERNAL, "test: usage not exactly once and last");
          }
          break;
        }
        case 4: {
          name = "get";
          v1::GetCacheRequest r;
          r.set_cache_id(id);
          GetResult got = GetCache(*s.cache, r, opts);
          status = got.status;
          if (status.ok() && got.header.sha256() != Sha256Raw(got.value)) {
            status = grpc::Status(grpc::StatusCode::INTERNAL, "test: sha256 mismatch");
          }
          break;
        }
        case 5: {
          name = "stat";
          grpc::ClientContext ctx;
          Configure(ctx, opts);
          v1::StatCacheRequest r;
          r.set_cache_id(id);
          r.set_include_info(i % 2 == 0);
          v1::StatCacheResponse out;
          status = s.cache->Stat(&ctx, r, &out);
          break;
        }
        case 6: {
          name = "list";
          grpc::ClientContext ctx;
          Configure(ctx, opts);
          v1::ListCachesRequest r;
          r.set_page_size(50);
          v1::ListCachesResponse out;
          status = s.cache->List(&ctx, r, &out);
          break;
        }
        case 7: {
          name = "model-info";
          grpc::ClientContext ctx;
          Configure(ctx, opts);
          v1::ModelInfo out;
          status = s.compressor->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &out);
          break;
        }
        case 8: {
          name = "compress-from-full";
          v1::CompressRequest r;
          for (const auto& f : full_caches.results()) r.add_document_cache_ids(f.cache_id());
          r.set_query(kQueries[i % 4]);
          r.mutable_spec()->set_method("snapkv");
          r.mutable_spec()->set_ratio(2);
          (*r.mutable_spec()->mutable_options())["window"] = "query";
          grpc::ClientContext ctx;
          Configure(ctx, opts);
          v1::CompressResponse out;
          status = s.compressor->Compress(&ctx, r, &out);
          break;
        }
        case 9: {
          name = "precompute-hit";
          grpc::ClientContext ctx;
          Configure(ctx, opts);
          v1::PrecomputeResponse out;
          status = s.compressor->Precompute(&ctx, agnostic, &out);
          if (status.ok() && !std::all_of(out.results().begin(), out.results().end(),
                                          [](const auto& r) { return r.cache_hit(); })) {
            status = grpc::Status(grpc::StatusCode::INTERNAL, "test: precompute was not all hits");
          }
          break;
        }
      }
      ++calls;
      ++per_op[op];
      if (!status.ok()) errors.Add(name, status);
    }
  };

  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) threads.emplace_back(client, c);
  std::vector<int64_t> warm_samples;
  int64_t max_after = 0, last = 0;
  while (absl::Now() - start < kRun) {
    absl::SleepFor(absl::Milliseconds(250));
    const int64_t rss = server->RssBytes();
    ASSERT_GT(rss, 0) << "cannot read the server's VmRSS";
    const absl::Duration t = absl::Now() - start;
    if (t < kWarmUp) {
      if (t > kWarmUp - absl::Seconds(1)) warm_samples.push_back(rss);
    } else {
      max_after = std::max(max_after, rss);
      last = rss;
    }
  }
  stop = true;
  for (auto& t : threads) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  ASSERT_FALSE(warm_samples.empty());
  const int64_t warm = *std::max_element(warm_samples.begin(), warm_samples.end());

  std::printf("%lld calls in %.1fs by %d clients (%lld new compressions); per op (compress-hit, compress-miss, "
              "generate x2, get, stat, list, model-info, compress-from-full, precompute-hit):",
              static_cast<long long>(calls.load()), seconds, kClients, static_cast<long long>(misses.load()));
  for (int op = 0; op < 10; ++op) std::printf(" %lld", static_cast<long long>(per_op[op].load()));
  std::printf("\nRSS: %.1f MiB after warm-up, %.1f MiB max after, %.1f MiB at the end; growth %.1f MiB (bound %lld)\n",
              warm / 1048576.0, max_after / 1048576.0, last / 1048576.0, (max_after - warm) / 1048576.0,
              static_cast<long long>(kMaxGrowthBytes >> 20));
  RecordProperty("calls", static_cast<int>(calls.load()));
  RecordProperty("rss_warm_kib", static_cast<int>(warm / 1024));
  RecordProperty("rss_max_after_kib", static_cast<int>(max_after / 1024));

  {
    absl::MutexLock lock(&errors.mu);
    EXPECT_TRUE(errors.by_op_and_code.empty()) << [&] {
      std::string s = "errors (op code: count):";
      for (const auto& [k, v] : errors.by_op_and_code) absl::StrAppend(&s, " [", k, ": ", v, "]");
      for (const auto& e : errors.first) absl::StrAppend(&s, "\n  ", e);
      return s;
    }();
  }
  for (int op = 0; op < 10; ++op) EXPECT_GT(per_op[op].load(), 0) << "op " << op << " never ran";
  EXPECT_GT(misses.load(), kClients) << "too little model work to say anything about memory";
  EXPECT_LT(max_after - warm, kMaxGrowthBytes) << "RSS grew from " << warm << " to " << max_after << " bytes";

  // Every call is counted once it ends; the in-flight gauge returns to zero (its guard may outlive the
  // status the client saw by a moment).
  absl::StatusOr<std::string> metrics;
  for (int attempt = 0; attempt < 50; ++attempt) {
    metrics = HttpGet(server->metrics_port(), "/metrics");
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    if (MetricValue(*metrics, "kvc_inflight_requests", {}) == 0) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(MetricValue(*metrics, "kvc_inflight_requests", {}), 0);
  EXPECT_GE(MetricValue(*metrics, "kvc_requests_total", {{"rpc", "Generator.Generate"}, {"code", "OK"}}),
            per_op[2].load() + per_op[3].load());

  absl::StatusOr<int> code = server->Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << server->Log();
  if (HasFailure()) ADD_FAILURE() << "kvc-server log (tail):\n" << server->Log().substr(
      server->Log().size() > 100000 ? server->Log().size() - 100000 : 0);
}

}  // namespace
}  // namespace kvc::testing
