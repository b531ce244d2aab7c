#include "service/generator_service.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "compressor/util/status_macros.h"
#include "service/cache_loader.h"
#include "service/call_stop.h"
#include "service/grpc_status.h"

namespace kvc {
namespace {

using kvc::v1::GenerateRequest;
using kvc::v1::GenerateResponse;
using Clock = std::chrono::steady_clock;

// GenerateRequest defaults (proto/kvc/v1/common.proto, SamplingParams).
constexpr int64_t kDefaultMaxTokens = 256;
constexpr int kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 256;

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

absl::StatusOr<SamplingOptions> SamplingFromProto(const kvc::v1::SamplingParams& p) {
  SamplingOptions s;
  // Written so that NaN fails too.
  if (!(p.temperature() >= 0.0) || std::isinf(p.temperature())) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.temperature: ", p.temperature(),
                                                   ", must be a finite value >= 0 (0 is greedy)"));
  }
  s.temperature = p.temperature();
  if (p.top_k() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.top_k: ", p.top_k(), ", must be >= 0 (0 keeps all)"));
  }
  s.top_k = p.top_k();
  if (p.has_top_p()) {
    if (!(p.top_p() > 0.0 && p.top_p() <= 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat("sampling.top_p: ", p.top_p(), ", must be in (0, 1]"));
    }
    s.top_p = p.top_p();
  }
  s.seed = p.seed();
  if (p.has_max_tokens()) {
    if (p.max_tokens() < 1) {
      return absl::InvalidArgumentError(absl::StrCat("sampling.max_tokens: ", p.max_tokens(), ", must be >= 1"));
    }
    s.max_tokens = p.max_tokens();
  } else {
    s.max_tokens = kDefaultMaxTokens;
  }
  if (p.stop_size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.stop: ", p.stop_size(), " strings, at most ", kMaxStopStrings, " are allowed"));
  }
  for (int i = 0; i < p.stop_size(); ++i) {
    const std::string& stop = p.stop(i);
    if (stop.empty() || stop.size() > kMaxStopBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.stop[", i, "]: ", stop.size(), " bytes, must be 1 to ", kMaxStopBytes));
    }
    s.stop.push_back(stop);
  }
  s.stop_on_eos = p.has_stop_on_eos() ? p.stop_on_eos() : true;
  return s;
}

// Everything that can be checked without the store or the model's compute; runs on the gRPC thread.
absl::Status ValidateRequest(const GenerateRequest& r, const ModelRuntime& runtime, int32_t max_documents) {
  if (r.cache_ids_size() < 1 || r.cache_ids_size() > max_documents) {
    return absl::InvalidArgumentError(absl::StrCat("cache_ids: ", r.cache_ids_size(), " ids, must be 1 to ",
                                                   max_documents));
  }
  for (int i = 0; i < r.cache_ids_size(); ++i) {
    if (!ValidateCacheId(r.cache_ids(i)).ok()) {
      return absl::InvalidArgumentError(absl::StrCat("cache_ids[", i, "]: '", r.cache_ids(i),
                                                     "' is not a cache id (64 lowercase hexadecimal characters)"));
    }
  }
  switch (r.prompt_case()) {
    case GenerateRequest::kQuery:
      if (r.query().empty()) return absl::InvalidArgumentError("prompt: empty (query is an empty string)");
      break;
    case GenerateRequest::kSuffixIds: {
      const auto& ids = r.suffix_ids().ids();
      if (ids.empty()) return absl::InvalidArgumentError("prompt: empty (suffix_ids holds no ids)");
      const int64_t vocab = runtime.model().config().vocab_size;
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= vocab) {
          return absl::InvalidArgumentError(
              absl::StrCat("suffix_ids[", i, "]: token id ", ids[i], " is outside the vocabulary [0, ", vocab, ")"));
        }
      }
      break;
    }
    case GenerateRequest::kQuestions: {
      const auto& questions = r.questions().queries();
      if (questions.empty() || questions.size() > max_documents) {
        return absl::InvalidArgumentError(
            absl::StrCat("questions: ", questions.size(), " questions, must be 1 to ", max_documents));
      }
      for (int i = 0; i < questions.size(); ++i) {
        if (questions[i].empty()) return absl::InvalidArgumentError(absl::StrCat("questions[", i, "]: empty"));
      }
      break;
    }
    case GenerateRequest::PROMPT_NOT_SET:
      return absl::InvalidArgumentError("prompt: empty (set query, suffix_ids or questions)");
  }
  KVC_RETURN_IF_ERROR(SamplingFromProto(r.sampling()).status());
  return runtime.CheckRequestedModel(r.has_model() ? std::optional<std::string>(r.model()) : std::nullopt);
}

v1::FinishReason FinishReasonFromName(const std::string& name) {
  if (name == "length") return v1::FINISH_REASON_LENGTH;
  if (name == "eos") return v1::FINISH_REASON_EOS;
  if (name == "stop") return v1::FINISH_REASON_STOP;
  return v1::FINISH_REASON_UNSPECIFIED;
}

}  // namespace

// One Generate call. Its lifetime is reference counted: gRPC holds one reference until OnDone, and the
// executor task and the scheduler job each hold one while they are queued or running, so a call that is
// cancelled can be finished at once while its worker still runs to the next check.
//
// Rules that keep the reactor safe whatever the client does:
// - `mu_` orders every decision to write or finish: at most one write is in flight, Finish happens once and
//   never while a write is in flight, and no write starts after Finish.
// - StartWrite and Finish are called outside `mu_` (gRPC may run reactions inline).
// - After Finish the context may be gone, so workers never touch ctx_: the cancel flag and the deadline are
//   copied into the call.
class GenerateCall final : public grpc::ServerWriteReactor<GenerateResponse> {
 public:
  GenerateCall(GeneratorServiceImpl* service, grpc::CallbackServerContext* ctx, const GenerateRequest& request)
      : service_(service),
        arrival_(Clock::now()),
        deadline_(ctx->deadline() == std::chrono::system_clock::time_point::max()
                      ? absl::InfiniteFuture()
                      : absl::FromChrono(ctx->deadline())),
        request_(request) {
    service_->CallStarted();
  }

  void Start() {
    absl::Status valid = ValidateRequest(request_, *service_->runtime_, service_->options_.max_documents);
    if (!valid.ok()) return FinishEarly(valid);
    sampling_ = *SamplingFromProto(request_.sampling());
    Ref();
    absl::Status submitted = service_->executor_->Submit([this] {
      Load();
      Unref();
    });
    if (!submitted.ok()) {
      Unref();
      FinishEarly(absl::Status(submitted.code(), absl::StrCat("generate: cache loading queue: ", submitted.message())));
    }
  }

  void OnWriteDone(bool ok) override {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      // Not ok: the stream broke (the client went away); there is nobody left to decode for.
      if (!ok) cancelled_.store(true);
      action = NextLocked();
    }
    Perform(action);
  }

  void OnCancel() override {
    cancelled_.store(true);
    Action action;
    {
      absl::MutexLock lock(&mu_);
      action = NextLocked();
    }
    Perform(action);
  }

  void OnDone() override { Unref(); }

 private:
  enum class Action { kNone, kWrite, kFinish };

  ~GenerateCall() override { service_->CallEnded(); }

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  bool Stopped() const { return cancelled_.load() || absl::Now() >= deadline_; }
  // Stopped, for a pause point; the call's references keep it alive through every hold.
  std::function<bool()> StoppedFn() const {
    return [this] { return Stopped(); };
  }
  // Only called once Stopped().
  absl::Status StopStatus() const {
    absl::Status stop = CallStop(cancelled_.load(), deadline_, "before the answer was complete");
    return stop.ok() ? absl::CancelledError("generate: the call was cancelled") : stop;
  }

  // Decides the next step of the stream; the caller performs it after releasing mu_.
  Action NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || write_in_flight_) return Action::kNone;
    // Only a cancel ends the stream from here: gRPC cancels a call whose deadline passes, and a usage
    // message already sent must still be followed by OK.
    if (cancelled_.load()) {
      finished_ = true;
      final_status_ = StopStatus();
      return Action::kFinish;
    }
    if (!pending_.empty()) {
      writing_ = std::move(pending_.front());
      pending_.pop_front();
      write_in_flight_ = true;
      return Action::kWrite;
    }
    if (!work_done_) return Action::kNone;
    finished_ = true;
    return Action::kFinish;
  }

  void Perform(Action action) {
    switch (action) {
      case Action::kNone:
        return;
      case Action::kWrite:
        // writing_ stays untouched until OnWriteDone clears write_in_flight_.
        StartWrite(&writing_);
        return;
      case Action::kFinish: {
        grpc::Status status;
        {
          absl::MutexLock lock(&mu_);
          status = ToGrpcStatus(final_status_);
        }
        Finish(status);
        return;
      }
    }
  }

  // Before any worker was started.
  void FinishEarly(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
      work_done_ = true;
      final_status_ = status;
    }
    Finish(ToGrpcStatus(status));
  }

  // The worker's last word: the stream ends with `status` once pending writes are out.
  void Complete(absl::Status status) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      work_done_ = true;
      if (!finished_) final_status_ = std::move(status);
      action = NextLocked();
    }
    Perform(action);
  }

  // From the decode thread: one question's totals, written after its last delta.
  void EmitUsage(v1::Usage usage) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      *pending_.emplace_back().mutable_usage() = std::move(usage);
      action = NextLocked();
    }
    Perform(action);
  }

  // From the decode thread: queue one token; coalesced into the question's pending delta while a write is in
  // flight.
  void Emit(int32_t question, const GenerationPiece& piece) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (pending_.empty() || !pending_.back().has_delta() || pending_.back().delta().question() != question) {
        v1::TextDelta* delta = pending_.emplace_back().mutable_delta();
        delta->set_index(static_cast<int32_t>(piece.index));
        delta->set_question(question);
      }
      v1::TextDelta* delta = pending_.back().mutable_delta();
      delta->add_token_ids(static_cast<int32_t>(piece.token_id));
      delta->mutable_text()->append(piece.text);
      action = NextLocked();
    }
    Perform(action);
  }

  // On the executor: fetch and decode the caches, tokenize the query, check the window, then queue the job.
  void Load() {
    const GeneratorServiceImpl& svc = *service_;
    ReachPausePoint(svc.options_.pause_points, pause_point::kGenerateLoad, StoppedFn());
    for (int i = 0; i < request_.cache_ids_size(); ++i) {
      if (Stopped()) return Complete(StopStatus());
      const Clock::time_point t = Clock::now();
      absl::StatusOr<LoadedCache> loaded =
          LoadCache(*svc.store_, *svc.runtime_, request_.cache_ids(i), absl::StrCat("cache_ids[", i, "]"));
      load_seconds_ += Seconds(t, Clock::now());
      if (!loaded.ok()) return Complete(loaded.status());
      if (svc.metrics_ != nullptr) {
        svc.metrics_->RecordStore("get", svc.store_->backend(), loaded->stored_bytes, loaded->fetch_seconds);
      }
      loaded_.push_back(std::move(*loaded));
    }

    ReachPausePoint(svc.options_.pause_points, pause_point::kGenerateTokenize, StoppedFn());
    std::vector<std::pair<std::string, const std::string*>> texts;  // (field, question)
    if (request_.has_query()) texts.emplace_back("query", &request_.query());
    for (int i = 0; i < request_.questions().queries_size(); ++i) {
      texts.emplace_back(absl::StrCat("questions[", i, "]"), &request_.questions().queries(i));
    }
    for (const auto& [field, text] : texts) {
      const Clock::time_point t_tokenize = Clock::now();
      absl::StatusOr<std::vector<int64_t>> suffix = svc.runtime_->EncodeSuffix(*text);
      if (!suffix.ok()) {
        return Complete(absl::Status(suffix.status().code(), absl::StrCat(field, ": ", suffix.status().message())));
      }
      suffixes_.push_back(std::move(*suffix));
      tokenize_seconds_.push_back(Seconds(t_tokenize, Clock::now()));
    }
    if (request_.has_suffix_ids()) {
      suffixes_.emplace_back(request_.suffix_ids().ids().begin(), request_.suffix_ids().ids().end());
      tokenize_seconds_.push_back(0);
    }

    if (absl::Status fits = CheckWindow(); !fits.ok()) return Complete(fits);
    if (Stopped()) return Complete(StopStatus());

    Job job;
    job.cost_tokens = 0;
    for (const std::vector<int64_t>& suffix : suffixes_) {
      job.cost_tokens += static_cast<int64_t>(suffix.size()) + sampling_.max_tokens;
    }
    job.deadline = deadline_;
    job.cancelled = [this] { return cancelled_.load(); };
    job.run = [this](const JobStart& start) {
      Decode(start);
      Unref();
    };
    Ref();
    absl::Status submitted = svc.scheduler_->Submit(std::move(job));
    if (!submitted.ok()) {
      Unref();
      // A request larger than the whole queue can never be admitted: that is the queue's limit too.
      if (absl::IsInvalidArgument(submitted)) submitted = absl::ResourceExhaustedError(submitted.message());
      return Complete(submitted);
    }
    // The executor task's reference keeps the call alive through the hold.
    ReachPausePoint(svc.options_.pause_points, pause_point::kGenerateQueued, StoppedFn());
  }

  // The window check of kvc::Generator, made before the request takes a place in the queue: positions used
  // are the composed caches', the prompt's and every generated token's but the last (never fed back). The
  // longest of several questions decides.
  absl::Status CheckWindow() const {
    int64_t start = 0;
    if (loaded_.size() == 1) {
      start = loaded_[0].cache.next_position();
    } else {
      for (size_t i = 0; i < loaded_.size(); ++i) {
        start += loaded_[i].cache.length() - (i == 0 ? 0 : loaded_[i].prefix_tokens);
      }
    }
    const int64_t window = service_->runtime_->model().config().max_position_embeddings;
    int64_t prompt = 0;
    for (const std::vector<int64_t>& suffix : suffixes_) prompt = std::max(prompt, static_cast<int64_t>(suffix.size()));
    if (start + prompt + sampling_.max_tokens - 1 <= window) return absl::OkStatus();
    const int64_t room = window - start - prompt + 1;
    return absl::OutOfRangeError(absl::StrCat(
        "sampling.max_tokens: the caches end at position ", start, ", the prompt adds ", prompt,
        " tokens and max_tokens asks for ", sampling_.max_tokens, ", past the model's window of ", window,
        " positions", room >= 1 ? absl::StrCat("; max_tokens can be at most ", room)
                                : std::string("; the prompt alone does not fit")));
  }

  // The request's common work, reported in the first question's timings.
  struct SharedWork {
    double queue_seconds = 0;
    double load_seconds = 0;
    double compose_seconds = 0;
  };

  // On a scheduler worker: compose once, then answer each question from the composed cache while streaming.
  void Decode(const JobStart& start) {
    const GeneratorServiceImpl& svc = *service_;
    const double queue_seconds = absl::ToDoubleSeconds(start.queued);
    if (svc.metrics_ != nullptr) svc.metrics_->RecordQueueSeconds(queue_seconds);
    if (!start.status.ok()) return Complete(start.status);
    if (Stopped()) return Complete(StopStatus());

    const Clock::time_point t_compose = Clock::now();
    absl::StatusOr<KvCache> composed = ComposeLoaded(std::move(loaded_), *svc.runtime_);
    loaded_.clear();
    const double compose_seconds = Seconds(t_compose, Clock::now());
    if (!composed.ok()) return Complete(composed.status());

    for (size_t q = 0; q < suffixes_.size(); ++q) {
      if (Stopped()) return Complete(StopStatus());
      // Only the first question waited and loaded; the later ones reuse its composed cache.
      SharedWork shared;
      if (q == 0) shared = {queue_seconds, load_seconds_, compose_seconds};
      absl::StatusOr<v1::Usage> usage = Answer(static_cast<int32_t>(q), *composed, shared);
      if (!usage.ok()) return Complete(usage.status());
      ReachPausePoint(svc.options_.pause_points, pause_point::kGenerateStream, StoppedFn());
      // A deadline that passed before the usage went out ends the call as the client sees it, even before
      // gRPC's own timer cancels the stream.
      if (Stopped()) return Complete(StopStatus());
      EmitUsage(*std::move(usage));
    }
    Complete(absl::OkStatus());
  }

  // Decodes question q from the composed cache (which the generator copies, leaving it for the next one),
  // streaming its tokens; returns its usage, with `shared` as its part of the request's common work.
  absl::StatusOr<v1::Usage> Answer(int32_t q, const KvCache& composed, const SharedWork& shared) {
    const GeneratorServiceImpl& svc = *service_;
    GenerationRequest request;
    request.caches = {&composed};
    request.suffix = std::move(suffixes_[q]);
    request.sampling = sampling_;
    request.keep_going = [this, points = svc.options_.pause_points] {
      ReachPausePoint(points, pause_point::kGenerateDecodeStep, StoppedFn());
      return !Stopped();
    };
    int64_t generated = 0;
    double ttft = 0;
    absl::StatusOr<GenerationResult> result =
        svc.generator_->Generate(request, [&](const GenerationPiece& piece) {
          if (generated++ == 0) ttft = Seconds(arrival_, Clock::now());
          Emit(q, piece);
          return true;
        });
    // Tokens generated are device work done, whether or not the call then succeeded.
    if (svc.metrics_ != nullptr && generated > 0) {
      svc.metrics_->RecordGeneration(generated, ttft);
      svc.metrics_->SetDeviceMemoryBytes(static_cast<double>(svc.runtime_->device_memory_bytes()));
    }
    if (!result.ok()) {
      if (absl::IsCancelled(result.status()) && Stopped()) return StopStatus();
      return result.status();
    }

    v1::Usage usage;
    usage.set_question(q);
    usage.set_cached_tokens(result->cached_tokens);
    usage.set_prompt_tokens(result->prompt_tokens);
    usage.set_generated_tokens(static_cast<int64_t>(result->tokens.size()));
    usage.set_finish_reason(FinishReasonFromName(result->finish_reason));
    usage.set_time_to_first_token_seconds(ttft);
    v1::GenerateTimings* t = usage.mutable_timings();
    t->set_queue_seconds(shared.queue_seconds);
    t->set_load_seconds(shared.load_seconds);
    // The generator copies the composed cache once more before decoding into it.
    t->set_compose_seconds(shared.compose_seconds + result->timings.compose_seconds);
    t->set_prefill_seconds(tokenize_seconds_[q] + result->timings.prefill_seconds);
    t->set_decode_seconds(result->timings.decode_seconds);
    t->set_mean_seconds_per_token(result->timings.mean_seconds_per_token);
    t->set_total_seconds(Seconds(arrival_, Clock::now()));
    if (svc.metrics_ != nullptr) {
      // A later question neither queued nor loaded: its zeros there are not observations.
      if (q == 0) {
        svc.metrics_->RecordPhase("generate", "queue", t->queue_seconds());
        svc.metrics_->RecordPhase("generate", "load", t->load_seconds());
      }
      svc.metrics_->RecordPhase("generate", "compose", t->compose_seconds());
      svc.metrics_->RecordPhase("generate", "prefill", t->prefill_seconds());
      svc.metrics_->RecordPhase("generate", "decode", t->decode_seconds());
    }
    return usage;
  }

  GeneratorServiceImpl* const service_;
  const Clock::time_point arrival_;
  const absl::Time deadline_;
  const GenerateRequest request_;  // a copy: the workers may outlive gRPC's request message
  std::atomic<int> refs_{1};       // gRPC's, released in OnDone
  std::atomic<bool> cancelled_{false};

  // Worker state, touched by one thread at a time (the executor task, then the scheduler job).
  SamplingOptions sampling_;
  std::vector<LoadedCache> loaded_;
  std::vector<std::vector<int64_t>> suffixes_;  // one per question (a query or suffix_ids is one)
  double load_seconds_ = 0;
  std::vector<double> tokenize_seconds_;  // per question

  absl::Mutex mu_;
  GenerateResponse writing_;  // the message in flight; only touched while no write is in flight
  // Messages waiting for the write in flight, in stream order: at most one delta per question between usages.
  std::deque<GenerateResponse> pending_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool work_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<GeneratorServiceImpl>> GeneratorServiceImpl::Create(
    const ModelRuntime* runtime, Scheduler* scheduler, CacheStore* store, ServiceMetrics* metrics,
    const GeneratorServiceOptions& options) {
  if (runtime == nullptr) return absl::InvalidArgumentError("generator service: no model runtime");
  if (scheduler == nullptr) return absl::InvalidArgumentError("generator service: no scheduler");
  if (store == nullptr) return absl::InvalidArgumentError("generator service: no store");
  if (options.max_documents < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("generator service max_documents: ", options.max_documents, ", must be >= 1"));
  }
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<Executor> executor, Executor::Create(options.executor));
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<Generator> generator,
                       Generator::Create(&runtime->model(), &runtime->tokenizer(), options.generator));
  return std::unique_ptr<GeneratorServiceImpl>(new GeneratorServiceImpl(
      runtime, scheduler, store, metrics, options, std::move(executor), std::move(generator)));
}

GeneratorServiceImpl::GeneratorServiceImpl(const ModelRuntime* runtime, Scheduler* scheduler, CacheStore* store,
                                           ServiceMetrics* metrics, const GeneratorServiceOptions& options,
                                           std::unique_ptr<Executor> executor, std::unique_ptr<Generator> generator)
    : runtime_(runtime),
      scheduler_(scheduler),
      store_(store),
      metrics_(metrics),
      options_(options),
      executor_(std::move(executor)),
      generator_(std::move(generator)) {}

GeneratorServiceImpl::~GeneratorServiceImpl() {
  // Calls whose work is still loading, queued or decoding reference this service; the scheduler and the
  // executor run (or refuse) that work, after which the last reference deletes the call.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int64_t* live) { return *live == 0; }, &live_calls_));
}

void GeneratorServiceImpl::CallStarted() {
  absl::MutexLock lock(&mu_);
  ++live_calls_;
}

void GeneratorServiceImpl::CallEnded() {
  absl::MutexLock lock(&mu_);
  --live_calls_;
}

grpc::ServerWriteReactor<GenerateResponse>* GeneratorServiceImpl::Generate(grpc::CallbackServerContext* ctx,
                                                                           const GenerateRequest* request) {
  auto* call = new GenerateCall(this, ctx, *request);
  call->Start();
  return call;
}

}  // namespace kvc
