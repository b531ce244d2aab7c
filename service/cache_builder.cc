#include "service/cache_builder.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "compressor/format/kvc_reader.h"
#include "compressor/tokenizer/text_boundaries.h"
#include "service/cache_info.h"
#include "service/call_stop.h"
#include "service/compress_request.h"

namespace kvc {
namespace {

double SecondsSince(absl::Time start) { return absl::ToDoubleSeconds(absl::Now() - start); }

// Why the call's work should stop now, `phase` saying where it was; OK to go on.
absl::Status StopStatus(const CacheBuildInput& in, absl::string_view phase) {
  return CallStop(in.cancelled && in.cancelled(), in.deadline, phase);
}

}  // namespace

struct CacheBuilder::Work {
  CacheBuildInput input;
  BuildDone done;
  std::optional<CompressionResult> result;
  int64_t tokens_in = 0;
  int64_t prefix_tokens = 0;
  kvc::v1::Timings timings;
};

void CacheBuilder::Build(CacheBuildInput input, BuildDone done) const {
  auto work = std::make_shared<Work>();
  // The tokens the model will run: the context and suffix, or only the suffix on top of stored caches.
  const int64_t cost = static_cast<int64_t>(input.sources.empty() ? input.context.size() + input.suffix.size()
                                                                  : input.suffix.size());
  Job job;
  job.cost_tokens = cost;
  job.deadline = input.deadline;
  job.cancelled = input.cancelled;
  // The hold below may outlast the work, so the pause point's view of the stop is a copy.
  const auto stopped = [deadline = input.deadline, cancelled = input.cancelled] {
    return !CallStop(cancelled && cancelled(), deadline, "").ok();
  };
  work->input = std::move(input);
  work->done = std::move(done);
  job.run = [this, work](const JobStart& start) { RunJob(work, start); };
  absl::Status submitted = scheduler_->Submit(std::move(job));
  if (absl::IsInvalidArgument(submitted)) {
    // The only refusal a well-formed job gets: larger than the whole queue. The request is valid, the server
    // is too small for it, which is what RESOURCE_EXHAUSTED tells a client.
    submitted = absl::ResourceExhaustedError(submitted.message());
  }
  if (!submitted.ok()) return work->done(submitted);
  // `work` may be done already; the hold touches nothing of it.
  ReachPausePoint(pause_points_, pause_point::kCompressQueued, stopped);
}

void CacheBuilder::RunJob(const std::shared_ptr<Work>& work, const JobStart& start) const {
  work->timings.set_queue_seconds(absl::ToDoubleSeconds(start.queued));
  if (metrics_ != nullptr) metrics_->RecordQueueSeconds(absl::ToDoubleSeconds(start.queued));
  if (!start.status.ok()) return work->done(start.status);

  CacheBuildInput& in = work->input;
  const absl::Time started = absl::Now();
  std::optional<KvCache> composed;
  if (!in.sources.empty()) {
    work->prefix_tokens = in.sources.front().prefix_tokens;
    absl::StatusOr<KvCache> c = ComposeLoaded(std::move(in.sources), *runtime_);
    in.sources.clear();
    if (!c.ok()) return work->done(c.status());
    composed.emplace(*std::move(c));
    work->tokens_in = composed->length();
  } else {
    work->prefix_tokens = in.protected_prefix;
    work->tokens_in = static_cast<int64_t>(in.context.size());
  }
  const double compose_seconds = SecondsSince(started);

  CompressionInput ci;
  ci.model = &runtime_->model();
  if (!in.context.empty()) {
    absl::StatusOr<std::vector<uint8_t>> boundaries = TextBoundaries(runtime_->tokenizer(), in.context);
    if (!boundaries.ok()) return work->done(boundaries.status());
    ci.boundaries = *std::move(boundaries);
  }
  ci.context = std::move(in.context);
  ci.protected_prefix = work->prefix_tokens;
  ci.suffix = std::move(in.suffix);
  ci.prefilled = composed.has_value() ? &*composed : nullptr;
  const auto stopped = [&in] { return !StopStatus(in, "").ok(); };
  ci.keep_going = [&stopped, points = pause_points_] {
    ReachPausePoint(points, pause_point::kCompressPrefillChunk, stopped);
    return !stopped();
  };
  const absl::Time compress_start = absl::Now();
  absl::StatusOr<CompressionResult> result = in.method->Compress(ci);
  const double wall = SecondsSince(compress_start);
  composed.reset();
  if (!result.ok()) {
    if (absl::IsCancelled(result.status())) {
      absl::Status stop = StopStatus(in, "during the prefill, which stopped at the next chunk");
      return work->done(stop.ok() ? result.status() : stop);
    }
    return work->done(QualifySpecError(result.status()));
  }
  ReachPausePoint(pause_points_, pause_point::kCompressCompressed, stopped);
  if (absl::Status stop = StopStatus(in, "after the selection, before serializing"); !stop.ok()) {
    return work->done(stop);
  }
  const std::vector<double>& chunks = result->stats.chunk_seconds;
  const double chunk_seconds = std::accumulate(chunks.begin(), chunks.end(), 0.0);
  work->timings.set_prefill_seconds(compose_seconds + chunk_seconds);
  work->timings.set_compress_seconds(std::max(0.0, wall - chunk_seconds));
  work->result.emplace(*std::move(result));

  absl::Status submitted = executor_->Submit([this, work] { SerializeAndStore(work); });
  if (!submitted.ok()) {
    work->result.reset();
    work->done(submitted);
  }
}

void CacheBuilder::SerializeAndStore(const std::shared_ptr<Work>& work) const {
  const CacheBuildInput& in = work->input;
  KvcProvenance provenance;
  provenance.model_name = runtime_->name();
  provenance.rope = RopeMetadata(runtime_->model().config());
  provenance.spec = nlohmann::json::parse(in.canonical_spec, nullptr, /*allow_exceptions=*/false);
  if (provenance.spec.is_discarded()) {
    work->result.reset();
    return work->done(absl::InternalError("canonical spec is not JSON"));
  }
  provenance.tokens_in = static_cast<uint64_t>(work->tokens_in);
  provenance.prefix_tokens = static_cast<uint64_t>(work->prefix_tokens);

  const auto stopped = [&in] { return !StopStatus(in, "").ok(); };
  ReachPausePoint(pause_points_, pause_point::kCompressSerialize, stopped);
  absl::Time t = absl::Now();
  absl::StatusOr<std::string> bytes = EncodeKvCache(work->result->cache, provenance, in.encode);
  work->timings.set_serialize_seconds(SecondsSince(t));
  work->result.reset();  // the tensors are no longer needed; free them before the store call
  if (!bytes.ok()) return work->done(bytes.status());
  if (absl::Status stop = StopStatus(in, "while serializing; nothing was stored"); !stop.ok()) {
    return work->done(stop);
  }

  ReachPausePoint(pause_points_, pause_point::kCompressStore, stopped);
  if (absl::Status stop = StopStatus(in, "before the store write; nothing was stored"); !stop.ok()) {
    return work->done(stop);
  }
  t = absl::Now();
  absl::Status put = store_->Put(in.cache_id, *bytes);
  const double put_seconds = SecondsSince(t);
  work->timings.set_store_seconds(put_seconds);
  if (metrics_ != nullptr) {
    metrics_->RecordStore("put", store_backend_, static_cast<int64_t>(bytes->size()), put_seconds);
  }
  if (!put.ok()) return work->done(put);
  // The Put is atomic, so a stop that came during it leaves a whole cache, which later requests can use.
  if (absl::Status stop = StopStatus(in, "during the store write; the complete cache was kept"); !stop.ok()) {
    return work->done(stop);
  }

  absl::StatusOr<KvcHeader> header = KvcReader::ReadHeader(*bytes);
  if (!header.ok()) return work->done(absl::InternalError(absl::StrCat("written cache does not read back: ",
                                                                     header.status().message())));
  kvc::v1::CacheInfo info = CacheInfoFromHeader(*header, in.cache_id, static_cast<int64_t>(bytes->size()));
  *info.mutable_timings() = work->timings;
  if (metrics_ != nullptr) {
    metrics_->RecordCompression(work->tokens_in, static_cast<int64_t>(header->tokens_out));
    metrics_->SetDeviceMemoryBytes(static_cast<double>(runtime_->device_memory_bytes()));
    const kvc::v1::Timings& t = work->timings;
    for (const auto& [phase, seconds] : {std::pair<const char*, double>{"queue", t.queue_seconds()},
                                         {"prefill", t.prefill_seconds()},
                                         {"compress", t.compress_seconds()},
                                         {"serialize", t.serialize_seconds()},
                                         {"store", t.store_seconds()}}) {
      metrics_->RecordPhase("compress", phase, seconds);
    }
  }
  work->done(std::move(info));
}

absl::StatusOr<std::optional<kvc::v1::CacheInfo>> CacheBuilder::FindStoredCache(const std::string& cache_id,
                                                                               double* store_seconds) const {
  const absl::Time start = absl::Now();
  absl::StatusOr<CacheEntryInfo> entry = store_->Stat(cache_id);
  if (!entry.ok()) {
    *store_seconds += SecondsSince(start);
    if (absl::IsNotFound(entry.status())) return std::nullopt;
    return entry.status();
  }
  absl::StatusOr<std::unique_ptr<CacheValue>> value = store_->GetValue(cache_id);
  const double seconds = SecondsSince(start);
  *store_seconds += seconds;
  if (!value.ok()) {
    // Evicted or deleted between the two calls: as good as never stored.
    if (absl::IsNotFound(value.status())) return std::nullopt;
    return value.status();
  }
  const absl::string_view bytes = (*value)->bytes();
  if (metrics_ != nullptr) metrics_->RecordStore("get", store_backend_, static_cast<int64_t>(bytes.size()), seconds);
  absl::StatusOr<KvcHeader> header = KvcReader::ReadHeader(bytes);
  if (!header.ok()) {
    return absl::DataLossError(absl::StrCat("stored cache ", cache_id, " is not a readable .kvc: ",
                                            header.status().message()));
  }
  return CacheInfoFromHeader(*header, cache_id, static_cast<int64_t>(bytes.size()));
}

}  // namespace kvc
