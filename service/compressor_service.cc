#include "service/compressor_service.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "compressor/util/status_macros.h"
#include "service/cache_id.h"
#include "service/call_stop.h"
#include "service/cache_loader.h"
#include "service/grpc_status.h"
#include "service/model_info.h"

namespace kvc {
namespace {

using kvc::v1::CacheInfo;
using kvc::v1::CompressRequest;
using kvc::v1::CompressResponse;
using kvc::v1::PrecomputeRequest;
using kvc::v1::PrecomputeResponse;

double SecondsSince(absl::Time start) { return absl::ToDoubleSeconds(absl::Now() - start); }

// gRPC reports "no deadline" as the largest time point, which absl::FromChrono cannot hold.
absl::Time CallDeadline(const grpc::CallbackServerContext* ctx) {
  const std::chrono::system_clock::time_point d = ctx->deadline();
  if (d >= std::chrono::system_clock::now() + std::chrono::hours(24 * 365 * 100)) return absl::InfiniteFuture();
  return absl::FromChrono(d);
}

// Checked between steps.
absl::Status StopReason(grpc::CallbackServerContext* ctx, absl::Time deadline) {
  return CallStop(ctx->IsCancelled(), deadline, "before the work was done");
}

std::optional<std::string> OptionalSystemPrompt(bool has, const std::string& value) {
  return has ? std::optional<std::string>(value) : std::nullopt;
}

// A stored cache's method, from its metadata; "" when it records none.
std::string StoredMethod(const KvcHeader& header) {
  const nlohmann::json& meta = header.metadata;
  if (!meta.is_object()) return "";
  auto spec = meta.find("spec");
  if (spec == meta.end() || !spec->is_object()) return "";
  auto method = spec->find("method");
  return method != spec->end() && method->is_string() ? method->get<std::string>() : "";
}

absl::Status CheckDocumentList(const google::protobuf::RepeatedPtrField<kvc::v1::Document>& documents,
                               int64_t vocab_size) {
  for (int i = 0; i < documents.size(); ++i) {
    KVC_RETURN_IF_ERROR(CheckDocument(documents[i], vocab_size, absl::StrCat("documents[", i, "]")));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Whether a call was cancelled, asked by its work on other threads, possibly after the call finished and its
// context is gone: a finished call answers true (nobody waits for its work any more) without touching it.
class CallCancel {
 public:
  explicit CallCancel(grpc::CallbackServerContext* ctx) : ctx_(ctx) {}

  bool Cancelled() {
    absl::MutexLock lock(&mu_);
    return finished_ || ctx_->IsCancelled();
  }
  // Runs `finish` once, the first time; the context may go as soon as it has run.
  void FinishOnce(const std::function<void()>& finish) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    finish();
  }

 private:
  absl::Mutex mu_;
  grpc::CallbackServerContext* const ctx_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// What a Compress or Precompute call shares: the reactor, the deadline and a Finish that runs once. After
// Finish the request, response and context may be gone, so every step ends by calling it and touches
// nothing of the call afterwards.
class CallBase {
 protected:
  explicit CallBase(grpc::CallbackServerContext* ctx)
      : ctx_(ctx), reactor_(ctx->DefaultReactor()), deadline_(CallDeadline(ctx)), arrival_(absl::Now()),
        cancel_(std::make_shared<CallCancel>(ctx)) {}

  void Finish(const absl::Status& status) {
    cancel_->FinishOnce([&] { reactor_->Finish(ToGrpcStatus(status)); });
  }

  // Safe to call on any thread, also after Finish.
  std::function<bool()> CancelledFn() const {
    return [cancel = cancel_] { return cancel->Cancelled(); };
  }
  // For a pause point: whether the call has stopped, as the next stop check will see it.
  std::function<bool()> StoppedFn() const {
    return [cancel = cancel_, deadline = deadline_] { return !CallStop(cancel->Cancelled(), deadline, "").ok(); };
  }

  grpc::CallbackServerContext* const ctx_;
  grpc::ServerUnaryReactor* const reactor_;
  const absl::Time deadline_;
  const absl::Time arrival_;

 private:
  const std::shared_ptr<CallCancel> cancel_;
};

}  // namespace

// One Compress call: prepared on the executor (tokens, cache id, lookup, referenced caches), built by the
// CacheBuilder on a miss.
class CompressCall final : public CallBase, public std::enable_shared_from_this<CompressCall> {
 public:
  CompressCall(CompressorServiceImpl* service, grpc::CallbackServerContext* ctx, const CompressRequest* request,
               CompressResponse* response, ParsedSpec spec, KvcDtype dtype, KvcCodec codec)
      : CallBase(ctx), service_(service), request_(request), response_(response),
        spec_(std::move(spec)), dtype_(dtype), codec_(codec) {}

  grpc::ServerUnaryReactor* Start() {
    absl::Status submitted = service_->executor_->Submit([self = shared_from_this()] { self->Prepare(); });
    if (!submitted.ok()) Finish(submitted);
    return reactor_;
  }

 private:
  void Prepare() {
    absl::Status status = PrepareAndLookUp();
    if (!status.ok()) Finish(status);
  }

  absl::Status PrepareAndLookUp() {
    KVC_RETURN_IF_ERROR(StopReason(ctx_, deadline_));
    const ModelRuntime& runtime = *service_->runtime_;
    const CompressorLimits& limits = service_->options_.limits;
    ReachPausePoint(service_->options_.pause_points, pause_point::kCompressTokenize, StoppedFn());
    const absl::Time tokenize_start = absl::Now();
    CacheIdInput id_input = CacheIdBase(runtime, spec_.spec, dtype_, codec_);
    std::vector<int64_t> suffix;
    if (spec_.UsesQuery(request_->document_cache_ids_size() > 0)) {
      KVC_ASSIGN_OR_RETURN(suffix, EncodeRequestSuffix(runtime, *request_, limits.max_query_tokens));
      if (suffix.empty()) return absl::InvalidArgumentError("query: empty");
    }
    if (request_->documents_size() > 0) {
      KVC_ASSIGN_OR_RETURN(
          EncodedContext context,
          EncodeRequestContext(runtime, OptionalSystemPrompt(request_->has_system_prompt(), request_->system_prompt()),
                               request_->documents(), limits.max_context_tokens));
      id_input.protected_prefix = context.protected_prefix;
      id_input.context = std::move(context.tokens);
    } else {
      id_input.document_cache_ids.assign(request_->document_cache_ids().begin(),
                                         request_->document_cache_ids().end());
    }
    id_input.query = suffix;
    tokenize_seconds_ = SecondsSince(tokenize_start);
    if (service_->metrics_ != nullptr) service_->metrics_->RecordPhase("compress", "tokenize", tokenize_seconds_);
    KVC_RETURN_IF_ERROR(StopReason(ctx_, deadline_));

    KVC_ASSIGN_OR_RETURN(cache_id_, ComputeCacheId(id_input));
    KVC_ASSIGN_OR_RETURN(std::optional<CacheInfo> stored,
                         service_->builder_->FindStoredCache(cache_id_, &store_seconds_));
    if (service_->metrics_ != nullptr) service_->metrics_->RecordCacheLookup(stored.has_value());
    if (stored.has_value()) {
      KVC_RETURN_IF_ERROR(StopReason(ctx_, deadline_));
      response_->set_cache_id(cache_id_);
      response_->set_cache_hit(true);
      *response_->mutable_info() = *std::move(stored);
      kvc::v1::Timings* t = response_->mutable_info()->mutable_timings();
      // The contract reports only queue, store and total time for a hit; tokenizing is part of the total.
      t->set_store_seconds(store_seconds_);
      t->set_total_seconds(SecondsSince(arrival_));
      Finish(absl::OkStatus());
      return absl::OkStatus();
    }

    CacheBuildInput build;
    build.cache_id = cache_id_;
    build.method = spec_.method;
    build.canonical_spec = CanonicalSpecJson(id_input);
    build.encode.dtype = dtype_;
    build.encode.codec = codec_;
    build.protected_prefix = id_input.protected_prefix;
    build.context = std::move(id_input.context);
    build.suffix = std::move(suffix);
    build.deadline = deadline_;
    build.cancelled = CancelledFn();
    KVC_RETURN_IF_ERROR(LoadSources(&build.sources));

    service_->builder_->Build(std::move(build), [self = shared_from_this()](absl::StatusOr<CacheInfo> info) {
      self->OnBuilt(std::move(info));
    });
    return absl::OkStatus();
  }

  // The referenced full caches, in order, checked to be full and to fit the context limit together.
  absl::Status LoadSources(std::vector<LoadedCache>* sources) {
    const ModelRuntime& runtime = *service_->runtime_;
    ServiceMetrics* metrics = service_->metrics_;
    int64_t composed_tokens = 0;
    for (int i = 0; i < request_->document_cache_ids_size(); ++i) {
      KVC_RETURN_IF_ERROR(StopReason(ctx_, deadline_));
      const std::string field = absl::StrCat("document_cache_ids[", i, "]");
      const std::string& id = request_->document_cache_ids(i);
      const absl::Time start = absl::Now();
      absl::StatusOr<LoadedCache> loaded = LoadCache(*service_->store_, runtime, id, field);
      store_seconds_ += SecondsSince(start);
      if (!loaded.ok()) return loaded.status();
      if (metrics != nullptr) {
        metrics->RecordStore("get", service_->builder_->store_backend(), loaded->stored_bytes,
                             loaded->fetch_seconds);
      }
      const std::string method = StoredMethod(loaded->header);
      if (method != "none") {
        return absl::FailedPreconditionError(absl::StrCat(
            field, ": cache ", id, " was made with method '", method,
            "', not a full cache; make it with Precompute mode PRECOMPUTE_MODE_FULL"));
      }
      const int64_t length = loaded->cache.length();
      composed_tokens += i == 0 ? length : length - loaded->prefix_tokens;
      sources->push_back(*std::move(loaded));
    }
    return CheckContextLength(composed_tokens, service_->options_.limits.max_context_tokens, "document_cache_ids");
  }

  void OnBuilt(absl::StatusOr<CacheInfo> info) {
    if (!info.ok()) return Finish(info.status());
    response_->set_cache_id(cache_id_);
    response_->set_cache_hit(false);
    *response_->mutable_info() = *std::move(info);
    kvc::v1::Timings* t = response_->mutable_info()->mutable_timings();
    t->set_tokenize_seconds(tokenize_seconds_);
    t->set_store_seconds(t->store_seconds() + store_seconds_);
    t->set_total_seconds(SecondsSince(arrival_));
    Finish(absl::OkStatus());
  }

  CompressorServiceImpl* const service_;
  const CompressRequest* const request_;
  CompressResponse* const response_;
  const ParsedSpec spec_;
  const KvcDtype dtype_;
  const KvcCodec codec_;
  std::string cache_id_;
  double tokenize_seconds_ = 0;
  double store_seconds_ = 0;  // the lookup and the referenced caches' loads
};

// One Precompute call: every document tokenized and checked first (all or nothing), then one cache per
// document in order, each a store hit or a CacheBuilder job.
class PrecomputeCall final : public CallBase, public std::enable_shared_from_this<PrecomputeCall> {
 public:
  PrecomputeCall(CompressorServiceImpl* service, grpc::CallbackServerContext* ctx, const PrecomputeRequest* request,
                 PrecomputeResponse* response, ParsedSpec spec, KvcDtype dtype, KvcCodec codec)
      : CallBase(ctx), service_(service), request_(request), response_(response),
        spec_(std::move(spec)), dtype_(dtype), codec_(codec) {}

  grpc::ServerUnaryReactor* Start() {
    absl::Status submitted = service_->executor_->Submit([self = shared_from_this()] { self->Prepare(); });
    if (!submitted.ok()) Finish(submitted);
    return reactor_;
  }

 private:
  struct Item {
    CacheIdInput id_input;
    std::string cache_id;
    double tokenize_seconds = 0;
  };

  void Prepare() {
    absl::Status status = Tokenize();
    if (!status.ok()) return Finish(status);
    Next();
  }

  absl::Status Tokenize() {
    KVC_RETURN_IF_ERROR(StopReason(ctx_, deadline_));
    const ModelRuntime& runtime = *service_->runtime_;
    ReachPausePoint(service_->options_.pause_points, pause_point::kCompressTokenize, StoppedFn());
    absl::Time start = absl::Now();
    KVC_ASSIGN_OR_RETURN(std::vector<int64_t> prefix,
                         EncodeRequestPrefix(runtime, OptionalSystemPrompt(request_->has_system_prompt(),
                                                                           request_->system_prompt())));
    items_.reserve(request_->documents_size());
    for (int i = 0; i < request_->documents_size(); ++i) {
      const std::string field = absl::StrCat("documents[", i, "]");
      absl::StatusOr<std::vector<int64_t>> doc = EncodeRequestDocument(runtime, request_->documents(i));
      if (!doc.ok()) return WithField(doc.status(), field);
      Item item;
      item.id_input = CacheIdBase(runtime, spec_.spec, dtype_, codec_);
      item.id_input.protected_prefix = static_cast<int64_t>(prefix.size());
      item.id_input.context = prefix;
      item.id_input.context.insert(item.id_input.context.end(), doc->begin(), doc->end());
      KVC_RETURN_IF_ERROR(CheckContextLength(static_cast<int64_t>(item.id_input.context.size()),
                                             service_->options_.limits.max_context_tokens, field));
      KVC_ASSIGN_OR_RETURN(item.cache_id, ComputeCacheId(item.id_input));
      // The shared prefix is counted with the first document.
      item.tokenize_seconds = SecondsSince(start);
      if (service_->metrics_ != nullptr) service_->metrics_->RecordPhase("compress", "tokenize", item.tokenize_seconds);
      start = absl::Now();
      items_.push_back(std::move(item));
    }
    return StopReason(ctx_, deadline_);
  }

  // Works through the documents from next_: hits are answered in this loop; a miss hands over to the
  // builder, whose completion calls Next again.
  void Next() {
    while (next_ < items_.size()) {
      if (absl::Status stop = StopReason(ctx_, deadline_); !stop.ok()) return Finish(stop);
      Item& item = items_[next_];
      item_start_ = absl::Now();
      item_store_seconds_ = 0;
      absl::StatusOr<std::optional<CacheInfo>> stored =
          service_->builder_->FindStoredCache(item.cache_id, &item_store_seconds_);
      if (!stored.ok()) return Finish(stored.status());
      if (service_->metrics_ != nullptr) service_->metrics_->RecordCacheLookup(stored->has_value());
      if (stored->has_value()) {
        AddResult(**std::move(stored), /*hit=*/true);
        continue;
      }
      CacheBuildInput build;
      build.cache_id = item.cache_id;
      build.method = spec_.method;
      build.canonical_spec = CanonicalSpecJson(item.id_input);
      build.encode.dtype = dtype_;
      build.encode.codec = codec_;
      build.protected_prefix = item.id_input.protected_prefix;
      build.context = std::move(item.id_input.context);
      build.deadline = deadline_;
      build.cancelled = CancelledFn();
      service_->builder_->Build(std::move(build), [self = shared_from_this()](absl::StatusOr<CacheInfo> info) {
        if (!info.ok()) return self->Finish(info.status());
        self->AddResult(*std::move(info), /*hit=*/false);
        self->Next();
      });
      return;
    }
    Finish(absl::OkStatus());
  }

  void AddResult(CacheInfo info, bool hit) {
    const Item& item = items_[next_];
    const kvc::v1::Document& doc = request_->documents(static_cast<int>(next_));
    kvc::v1::PrecomputeResult* result = response_->add_results();
    if (doc.has_id()) result->set_document_id(doc.id());
    result->set_cache_id(item.cache_id);
    result->set_cache_hit(hit);
    *result->mutable_info() = std::move(info);
    kvc::v1::Timings* t = result->mutable_info()->mutable_timings();
    if (!hit) t->set_tokenize_seconds(item.tokenize_seconds);
    t->set_store_seconds(t->store_seconds() + item_store_seconds_);
    t->set_total_seconds(item.tokenize_seconds + SecondsSince(item_start_));
    ++next_;
  }

  CompressorServiceImpl* const service_;
  const PrecomputeRequest* const request_;
  PrecomputeResponse* const response_;
  const ParsedSpec spec_;
  const KvcDtype dtype_;
  const KvcCodec codec_;
  std::vector<Item> items_;
  size_t next_ = 0;  // the document being worked on; one step at a time, so no lock
  absl::Time item_start_;
  double item_store_seconds_ = 0;
};

absl::StatusOr<std::unique_ptr<CompressorServiceImpl>> CompressorServiceImpl::Create(
    const ModelRuntime* runtime, Scheduler* scheduler, CacheStore* store, ServiceMetrics* metrics,
    const CompressorServiceOptions& options) {
  if (runtime == nullptr || scheduler == nullptr || store == nullptr) {
    return absl::InvalidArgumentError("compressor service: a runtime, a scheduler and a store are required");
  }
  const CompressorLimits& l = options.limits;
  if (l.max_context_tokens < 0 || l.max_query_tokens < 0 || l.max_documents < 0 || l.max_message_bytes < 0 ||
      l.max_queue_tokens < 0) {
    return absl::InvalidArgumentError("compressor service: limits must be >= 0 (0: no limit)");
  }
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<Executor> executor, Executor::Create(options.executor));
  auto builder = std::make_unique<CacheBuilder>(
      runtime, scheduler, executor.get(), store, metrics,
      options.store_backend.empty() ? store->backend() : options.store_backend, options.pause_points);
  kvc::v1::ModelInfo info = BuildModelInfo(*runtime, l);
  return std::unique_ptr<CompressorServiceImpl>(new CompressorServiceImpl(
      runtime, store, metrics, options, std::move(builder), std::move(executor), std::move(info)));
}

CompressorServiceImpl::CompressorServiceImpl(const ModelRuntime* runtime, CacheStore* store,
                                             ServiceMetrics* metrics, const CompressorServiceOptions& options,
                                             std::unique_ptr<CacheBuilder> builder,
                                             std::unique_ptr<Executor> executor, kvc::v1::ModelInfo model_info)
    : runtime_(runtime), store_(store), metrics_(metrics), options_(options), builder_(std::move(builder)),
      executor_(std::move(executor)), model_info_(std::move(model_info)) {}

CompressorServiceImpl::~CompressorServiceImpl() {
  // Runs what is still queued (it may use the builder), then joins the executor's threads.
  executor_.reset();
}

grpc::ServerUnaryReactor* CompressorServiceImpl::Compress(grpc::CallbackServerContext* ctx,
                                                          const CompressRequest* request,
                                                          CompressResponse* response) {
  const CompressorLimits& limits = options_.limits;
  const int64_t vocab = runtime_->model().config().vocab_size;
  if (absl::Status s = runtime_->CheckRequestedModel(
          request->has_model() ? std::optional<std::string>(request->model()) : std::nullopt);
      !s.ok()) {
    return FinishNow(ctx, s);
  }
  const int documents = request->documents_size(), referenced = request->document_cache_ids_size();
  if (documents > 0 && referenced > 0) {
    return FinishNow(ctx, absl::InvalidArgumentError(
                              "documents, document_cache_ids: both are set; give the documents one way"));
  }
  if (documents == 0 && referenced == 0) {
    return FinishNow(ctx, absl::InvalidArgumentError(
                              "documents: empty; give documents or document_cache_ids"));
  }
  if (limits.max_documents > 0 && std::max(documents, referenced) > limits.max_documents) {
    return FinishNow(ctx, absl::InvalidArgumentError(absl::StrCat(
                              documents > 0 ? "documents" : "document_cache_ids", ": ",
                              std::max(documents, referenced), " given, limits.max_documents is ",
                              limits.max_documents)));
  }
  if (absl::Status s = CheckDocumentList(request->documents(), vocab); !s.ok()) return FinishNow(ctx, s);
  for (int i = 0; i < referenced; ++i) {
    if (!ValidateCacheId(request->document_cache_ids(i)).ok()) {
      return FinishNow(ctx, absl::InvalidArgumentError(absl::StrCat(
                                "document_cache_ids[", i, "]: '", request->document_cache_ids(i),
                                "' is not a cache id (64 lowercase hexadecimal characters)")));
    }
  }
  absl::StatusOr<ParsedSpec> spec = ParseSpec(request->spec());
  if (!spec.ok()) return FinishNow(ctx, spec.status());
  if (request->question_case() == CompressRequest::kSuffixIds) {
    if (absl::Status s = CheckTokenIds(request->suffix_ids(), vocab, "suffix_ids"); !s.ok()) return FinishNow(ctx, s);
  }
  if (spec->UsesQuery(request->document_cache_ids_size() > 0)) {
    const bool has_question =
        (request->question_case() == CompressRequest::kQuery && !request->query().empty()) ||
        (request->question_case() == CompressRequest::kSuffixIds && request->suffix_ids().ids_size() > 0);
    if (!has_question) {
      return FinishNow(ctx, absl::InvalidArgumentError(absl::StrCat(
                                "query: empty, but method ", spec->spec.method,
                                " scores the context with the query; set query or suffix_ids")));
    }
  }
  absl::StatusOr<KvcDtype> dtype = ParseCacheDtype(request->cache_dtype());
  if (!dtype.ok()) return FinishNow(ctx, dtype.status());
  absl::StatusOr<KvcCodec> codec = ParseCacheCodec(request->cache_codec());
  if (!codec.ok()) return FinishNow(ctx, codec.status());
  auto call = std::make_shared<CompressCall>(this, ctx, request, response, *std::move(spec), *dtype, *codec);
  return call->Start();
}

grpc::ServerUnaryReactor* CompressorServiceImpl::Precompute(grpc::CallbackServerContext* ctx,
                                                            const PrecomputeRequest* request,
                                                            PrecomputeResponse* response) {
  const CompressorLimits& limits = options_.limits;
  if (absl::Status s = runtime_->CheckRequestedModel(
          request->has_model() ? std::optional<std::string>(request->model()) : std::nullopt);
      !s.ok()) {
    return FinishNow(ctx, s);
  }
  const kvc::v1::PrecomputeMode mode = request->mode();
  if (mode == kvc::v1::PRECOMPUTE_MODE_UNSPECIFIED) {
    return FinishNow(ctx, absl::InvalidArgumentError(
                              "mode: required (PRECOMPUTE_MODE_QUERY_AGNOSTIC or PRECOMPUTE_MODE_FULL)"));
  }
  if (mode != kvc::v1::PRECOMPUTE_MODE_QUERY_AGNOSTIC && mode != kvc::v1::PRECOMPUTE_MODE_FULL) {
    return FinishNow(ctx, absl::InvalidArgumentError(absl::StrCat("mode: unknown value ", static_cast<int>(mode))));
  }
  const int documents = request->documents_size();
  if (documents == 0) {
    return FinishNow(ctx, absl::InvalidArgumentError("documents: empty; at least one document is required"));
  }
  if (limits.max_documents > 0 && documents > limits.max_documents) {
    return FinishNow(ctx, absl::InvalidArgumentError(absl::StrCat(
                              "documents: ", documents, " given, limits.max_documents is ", limits.max_documents)));
  }
  if (absl::Status s = CheckDocumentList(request->documents(), runtime_->model().config().vocab_size); !s.ok()) {
    return FinishNow(ctx, s);
  }
  absl::StatusOr<ParsedSpec> spec;
  if (mode == kvc::v1::PRECOMPUTE_MODE_FULL) {
    // An empty spec message is how many clients say "unset"; it means the same here.
    const bool unset = !request->has_spec() || request->spec().ByteSizeLong() == 0;
    kvc::v1::CompressionSpec full;
    full.set_method("none");
    if (!unset) {
      if (request->spec().method() != "none") {
        return FinishNow(ctx, absl::InvalidArgumentError(absl::StrCat(
                                  "spec.method: '", request->spec().method(),
                                  "' with PRECOMPUTE_MODE_FULL, which stores the uncompressed KV; leave spec "
                                  "unset or use method \"none\"")));
      }
      full = request->spec();
    }
    spec = ParseSpec(full);
  } else {
    spec = ParseSpec(request->spec());
    if (spec.ok() && spec->query_aware) {
      return FinishNow(ctx, absl::InvalidArgumentError(absl::StrCat(
                                "spec.method: ", spec->spec.method,
                                " scores with the query, which PRECOMPUTE_MODE_QUERY_AGNOSTIC does not have; use "
                                "novelty, recall, streaming_llm, knorm, random, truncate, snapkv with a fixed window, or "
                                "none")));
    }
  }
  if (!spec.ok()) return FinishNow(ctx, spec.status());
  absl::StatusOr<KvcDtype> dtype = ParseCacheDtype(request->cache_dtype());
  if (!dtype.ok()) return FinishNow(ctx, dtype.status());
  absl::StatusOr<KvcCodec> codec = ParseCacheCodec(request->cache_codec());
  if (!codec.ok()) return FinishNow(ctx, codec.status());
  auto call = std::make_shared<PrecomputeCall>(this, ctx, request, response, *std::move(spec), *dtype, *codec);
  return call->Start();
}

grpc::ServerUnaryReactor* CompressorServiceImpl::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                              const kvc::v1::GetModelInfoRequest* request,
                                                              kvc::v1::ModelInfo* response) {
  *response = model_info_;
  return FinishNow(ctx, absl::OkStatus());
}

}  // namespace kvc
