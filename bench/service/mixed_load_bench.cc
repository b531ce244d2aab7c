#include "bench/service/mixed_load_bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "proto/kvc/v1/cache.grpc.pb.h"
#include "proto/kvc/v1/compressor.grpc.pb.h"
#include "proto/kvc/v1/generator.grpc.pb.h"
#include "tests/support/kvc_test_client.h"

namespace kvc::bench {
namespace {

using Clock = std::chrono::steady_clock;

const char* const kQueries[] = {"What is the capital of France?", "Who wrote the report?",
                                "When does the meeting start?", "Where does the river flow?"};

kvc::v1::CompressRequest FinchRequest(const std::string& text, int query) {
  kvc::v1::CompressRequest r;
  r.add_documents()->set_text(text);
  r.set_query(kQueries[query % 4]);
  r.mutable_spec()->set_method("finch");
  r.mutable_spec()->set_ratio(4);
  (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "64";
  return r;
}

struct Stubs {
  explicit Stubs(const std::shared_ptr<grpc::Channel>& channel)
      : compressor(kvc::v1::Compressor::NewStub(channel)), cache(kvc::v1::CacheService::NewStub(channel)),
        generator(kvc::v1::Generator::NewStub(channel)) {}
  std::unique_ptr<kvc::v1::Compressor::Stub> compressor;
  std::unique_ptr<kvc::v1::CacheService::Stub> cache;
  std::unique_ptr<kvc::v1::Generator::Stub> generator;
};

// The per-call outcome: the status and whether an OK answer was what the RPC kind expects.
struct Outcome {
  grpc::Status status;
  bool expected = true;
};

class Client {
 public:
  Client(int index, const MixedLoadOptions& options, const std::vector<kvc::v1::CompressRequest>& pool,
         const std::vector<std::string>& cache_ids, std::shared_ptr<grpc::Channel> channel)
      : index_(index), options_(options), pool_(pool), cache_ids_(cache_ids), stubs_(channel),
        rng_(options.seed * 1000003 + static_cast<uint64_t>(index)),
        pick_(options.weights.begin(), options.weights.end()) {}

  void Run(Clock::time_point start, Clock::time_point end, std::array<RpcStats, kRpcKinds>* stats,
           std::vector<int64_t>* per_second, std::vector<int64_t>* model_per_second) {
    for (int64_t i = 0; Clock::now() < end; ++i) {
      const Rpc rpc = static_cast<Rpc>(pick_(rng_));
      const Clock::time_point t0 = Clock::now();
      const Outcome out = Call(rpc, i);
      const Clock::time_point t1 = Clock::now();
      const double seconds = std::chrono::duration<double>(t1 - t0).count();
      const size_t second = static_cast<size_t>(std::chrono::duration_cast<std::chrono::seconds>(t1 - start).count());
      if (second >= per_second->size()) {
        per_second->resize(second + 1);
        model_per_second->resize(second + 1);
      }
      ++(*per_second)[second];
      if (rpc == Rpc::kCompressMiss || rpc == Rpc::kGenerate) ++(*model_per_second)[second];
      RpcStats& s = (*stats)[static_cast<int>(rpc)];
      ++s.calls;
      if (out.status.ok()) {
        s.ok.Add(seconds);
        if (!out.expected) ++s.unexpected;
      } else {
        ++s.errors[CodeName(out.status.error_code())];
      }
    }
  }

 private:
  void Prepare(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(options_.timeout));
  }

  const std::string& AnyCacheId() { return cache_ids_[rng_() % cache_ids_.size()]; }

  Outcome Call(Rpc rpc, int64_t i) {
    grpc::ClientContext ctx;
    Prepare(ctx);
    Outcome out;
    switch (rpc) {
      case Rpc::kCompressHit: {
        kvc::v1::CompressResponse response;
        out.status = stubs_.compressor->Compress(&ctx, pool_[rng_() % pool_.size()], &response);
        out.expected = response.cache_hit();
        break;
      }
      case Rpc::kCompressMiss: {
        // Text no other call sends: the client, its call number and a seed make it unique.
        const std::string text =
            absl::StrCat(kvc::testing::FillerText(options_.document_words, rng_()), " ", index_, " ", i);
        kvc::v1::CompressResponse response;
        out.status = stubs_.compressor->Compress(&ctx, FinchRequest(text, static_cast<int>(i)), &response);
        out.expected = !response.cache_hit();
        break;
      }
      case Rpc::kGenerate: {
        kvc::v1::GenerateRequest request;
        request.add_cache_ids(AnyCacheId());
        request.set_query(kQueries[i % 4]);
        request.mutable_sampling()->set_max_tokens(options_.generate_tokens);
        std::unique_ptr<grpc::ClientReader<kvc::v1::GenerateResponse>> reader =
            stubs_.generator->Generate(&ctx, request);
        kvc::v1::GenerateResponse message;
        int usage = 0;
        while (reader->Read(&message)) usage += message.has_usage() ? 1 : 0;
        out.status = reader->Finish();
        out.expected = usage == 1;
        break;
      }
      case Rpc::kStat: {
        kvc::v1::StatCacheRequest request;
        request.set_cache_id(AnyCacheId());
        request.set_include_info(i % 2 == 0);
        kvc::v1::StatCacheResponse response;
        out.status = stubs_.cache->Stat(&ctx, request, &response);
        break;
      }
      case Rpc::kGet: {
        kvc::v1::GetCacheRequest request;
        request.set_cache_id(AnyCacheId());
        std::unique_ptr<grpc::ClientReader<kvc::v1::CacheChunk>> reader = stubs_.cache->Get(&ctx, request);
        kvc::v1::CacheChunk chunk;
        int64_t messages = 0;
        while (reader->Read(&chunk)) ++messages;
        out.status = reader->Finish();
        out.expected = messages >= 2;  // a header, then data
        break;
      }
      case Rpc::kList: {
        kvc::v1::ListCachesRequest request;
        request.set_page_size(50);
        kvc::v1::ListCachesResponse response;
        out.status = stubs_.cache->List(&ctx, request, &response);
        out.expected = response.entries_size() > 0;
        break;
      }
      case Rpc::kModelInfo: {
        kvc::v1::ModelInfo response;
        out.status = stubs_.compressor->GetModelInfo(&ctx, kvc::v1::GetModelInfoRequest(), &response);
        out.expected = !response.fingerprint().empty();
        break;
      }
    }
    return out;
  }

  const int index_;
  const MixedLoadOptions& options_;
  const std::vector<kvc::v1::CompressRequest>& pool_;
  const std::vector<std::string>& cache_ids_;
  Stubs stubs_;
  std::mt19937_64 rng_;
  std::discrete_distribution<int> pick_;
};

}  // namespace

const char* RpcName(Rpc rpc) {
  switch (rpc) {
    case Rpc::kCompressHit: return "Compress (hit)";
    case Rpc::kCompressMiss: return "Compress (miss, finch)";
    case Rpc::kGenerate: return "Generate";
    case Rpc::kStat: return "CacheService.Stat";
    case Rpc::kGet: return "CacheService.Get";
    case Rpc::kList: return "CacheService.List";
    case Rpc::kModelInfo: return "GetModelInfo";
  }
  return "?";
}

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return absl::StrCat("CODE_", static_cast<int>(code));
  }
}

absl::StatusOr<MixedLoadResult> RunMixedLoad(const std::function<std::shared_ptr<grpc::Channel>()>& new_channel,
                                             const MixedLoadOptions& options) {
  if (options.clients < 1 || options.hit_pool < 1) return absl::InvalidArgumentError("clients, hit_pool: >= 1");
  if (std::accumulate(options.weights.begin(), options.weights.end(), 0) <= 0) {
    return absl::InvalidArgumentError("weights: at least one must be positive");
  }
  // The hit pool, compressed once before the clock starts; its caches also serve Generate, Stat and Get.
  std::vector<kvc::v1::CompressRequest> pool;
  std::vector<std::string> cache_ids;
  {
    Stubs setup(new_channel());
    for (int k = 0; k < options.hit_pool; ++k) {
      pool.push_back(FinchRequest(kvc::testing::FillerText(options.document_words, 900 + k), k));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
      kvc::v1::CompressResponse response;
      grpc::Status s = setup.compressor->Compress(&ctx, pool.back(), &response);
      if (!s.ok()) {
        return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                            absl::StrCat("setup Compress ", k, ": ", s.error_message()));
      }
      cache_ids.push_back(response.cache_id());
    }
  }

  std::vector<std::unique_ptr<Client>> clients;
  for (int c = 0; c < options.clients; ++c) {
    // Connected before the clock starts, so that connection setup is not timed as a call.
    std::shared_ptr<grpc::Channel> channel = new_channel();
    channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
    clients.push_back(std::make_unique<Client>(c, options, pool, cache_ids, std::move(channel)));
  }
  std::vector<std::array<RpcStats, kRpcKinds>> per_client(options.clients);
  std::vector<std::vector<int64_t>> per_second(options.clients), model_per_second(options.clients);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  Clock::time_point start, end;
  std::vector<std::thread> threads;
  for (int c = 0; c < options.clients; ++c) {
    threads.emplace_back([&, c] {
      ++ready;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      clients[c]->Run(start, end, &per_client[c], &per_second[c], &model_per_second[c]);
    });
  }
  while (ready.load() < options.clients) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  start = Clock::now();
  end = start + absl::ToChronoNanoseconds(options.duration);
  go.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();

  MixedLoadResult result;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (int c = 0; c < options.clients; ++c) {
    for (auto [from, into] : {std::pair{&per_second[c], &result.per_second},
                              std::pair{&model_per_second[c], &result.model_per_second}}) {
      if (from->size() > into->size()) into->resize(from->size());
      for (size_t k = 0; k < from->size(); ++k) (*into)[k] += (*from)[k];
    }
  }
  for (const auto& client : per_client) {
    for (int k = 0; k < kRpcKinds; ++k) {
      RpcStats& into = result.rpcs[k];
      const RpcStats& from = client[k];
      into.calls += from.calls;
      into.ok.Merge(from.ok);
      into.unexpected += from.unexpected;
      for (const auto& [code, n] : from.errors) into.errors[code] += n;
    }
  }
  return result;
}

std::string FormatMixedLoad(const MixedLoadResult& r, const MixedLoadOptions& o) {
  std::vector<std::string> mix;
  const int total_weight = std::accumulate(o.weights.begin(), o.weights.end(), 0);
  for (int k = 0; k < kRpcKinds; ++k) {
    mix.push_back(absl::StrFormat("%s %d%%", RpcName(static_cast<Rpc>(k)), 100 * o.weights[k] / total_weight));
  }
  std::string out = absl::StrFormat(
      "### Mixed load: %d clients (one connection each), %.1f s; %d-word documents, a pool of %d cached finch "
      "requests, Generate of %d tokens\n\nMix: %s.\n\n",
      o.clients, r.seconds, o.document_words, o.hit_pool, o.generate_tokens, absl::StrJoin(mix, ", "));
  absl::StrAppend(&out,
                  "| RPC | calls | calls/s | OK p50 ms | OK p90 ms | OK p99 ms | OK max ms | errors | unexpected |\n"
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  Latencies all;
  int64_t calls = 0, errors = 0, unexpected = 0;
  std::map<std::string, int64_t> codes;
  for (int k = 0; k < kRpcKinds; ++k) {
    const RpcStats& s = r.rpcs[k];
    int64_t e = 0;
    for (const auto& [code, n] : s.errors) {
      e += n;
      codes[code] += n;
    }
    const LatencySummary l = s.ok.Summary();
    absl::StrAppend(&out, absl::StrFormat("| %s | %d | %.1f | %s | %s | %s | %s | %d | %d |\n",
                                          RpcName(static_cast<Rpc>(k)), s.calls, s.calls / r.seconds,
                                          Ms(l.p50_ms), Ms(l.p90_ms), Ms(l.p99_ms), Ms(l.max_ms), e, s.unexpected));
    all.Merge(s.ok);
    calls += s.calls;
    errors += e;
    unexpected += s.unexpected;
  }
  const LatencySummary l = all.Summary();
  absl::StrAppend(&out, absl::StrFormat("| **total** | %d | %.1f | %s | %s | %s | %s | %d | %d |\n", calls,
                                        calls / r.seconds, Ms(l.p50_ms), Ms(l.p90_ms), Ms(l.p99_ms), Ms(l.max_ms),
                                        errors, unexpected));
  // Whole seconds only: the last, partial one (calls that were running at the end) is left out.
  auto timeline = [&](const std::vector<int64_t>& v) {
    std::vector<int64_t> full(v.begin(), v.begin() + std::min<size_t>(v.size(), static_cast<size_t>(
                                                                       absl::ToInt64Seconds(o.duration))));
    if (full.empty()) return std::string("n/a");
    std::vector<int64_t> sorted = full;
    std::sort(sorted.begin(), sorted.end());
    const int64_t empty = std::count(full.begin(), full.end(), 0);
    return absl::StrFormat("min %d, median %d, max %d calls/s; %d of %d seconds with none", sorted.front(),
                           sorted[sorted.size() / 2], sorted.back(), empty, full.size());
  };
  absl::StrAppend(&out, "\nPer one-second window: all RPCs ", timeline(r.per_second), "; model RPCs (Compress miss, "
                        "Generate) ", timeline(r.model_per_second), ".\n");
  absl::StrAppend(&out, "\nErrors by code: ");
  if (codes.empty()) {
    absl::StrAppend(&out, "none");
  } else {
    std::vector<std::string> parts;
    for (const auto& [code, n] : codes) parts.push_back(absl::StrCat(code, " ", n));
    absl::StrAppend(&out, absl::StrJoin(parts, ", "));
  }
  absl::StrAppend(&out,
                  ". RESOURCE_EXHAUSTED is the admission control's answer when the scheduler's queue is full: "
                  "expected under overload, not a failure. \"unexpected\": OK answers of the wrong kind (a miss in "
                  "the hit pool, a Generate stream without exactly one usage message, an empty Get or List).\n");
  return out;
}

}  // namespace kvc::bench
