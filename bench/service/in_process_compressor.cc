#include "bench/service/in_process_compressor.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "compressor/util/status_macros.h"
#include "service/cache_id.h"

namespace kvc::bench {
namespace {

using kvc::v1::CacheInfo;
using kvc::v1::CompressRequest;
using kvc::v1::CompressResponse;

double SecondsSince(absl::Time start) { return absl::ToDoubleSeconds(absl::Now() - start); }

// One call's state, shared by the executor task and the builder's completion.
struct Call {
  const CompressRequest* request = nullptr;
  ParsedSpec spec;
  KvcDtype dtype = KvcDtype::kF32;
  KvcCodec codec = KvcCodec::kNone;
  absl::Time arrival;
  double tokenize_seconds = 0;
  double store_seconds = 0;
  std::string cache_id;
  CompressResponse response;
  absl::Status status;
  absl::Notification done;

  void Finish(absl::Status s) {
    status = std::move(s);
    done.Notify();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<InProcessCompressor>> InProcessCompressor::Create(
    const InProcessCompressorOptions& options) {
  std::unique_ptr<InProcessCompressor> c(new InProcessCompressor());
  c->limits_ = options.limits;
  KVC_ASSIGN_OR_RETURN(c->runtime_, ModelRuntime::Load(options.model));
  KVC_ASSIGN_OR_RETURN(c->store_, OpenCacheStore(options.store_uri, StoreOptions()));
  c->registry_ = std::make_shared<prometheus::Registry>();
  c->metrics_ = std::make_unique<ServiceMetrics>(*c->registry_);
  KVC_ASSIGN_OR_RETURN(c->scheduler_, Scheduler::Create(options.scheduler));
  KVC_ASSIGN_OR_RETURN(c->executor_, Executor::Create(options.executor));
  c->builder_ = std::make_unique<CacheBuilder>(c->runtime_.get(), c->scheduler_.get(), c->executor_.get(),
                                               c->store_.get(), c->metrics_.get(), c->store_->backend());
  return c;
}

InProcessCompressor::~InProcessCompressor() {
  // The executor's queued tasks may use the builder and the scheduler: drain it first.
  executor_.reset();
  scheduler_.reset();
}

absl::StatusOr<CompressResponse> InProcessCompressor::Compress(const CompressRequest& request) const {
  // The checks CompressorServiceImpl::Compress makes on the gRPC thread.
  const int64_t vocab = runtime_->model().config().vocab_size;
  KVC_RETURN_IF_ERROR(runtime_->CheckRequestedModel(
      request.has_model() ? std::optional<std::string>(request.model()) : std::nullopt));
  if (request.document_cache_ids_size() > 0) {
    return absl::UnimplementedError("document_cache_ids: not supported by the in-process path");
  }
  if (request.documents_size() == 0) return absl::InvalidArgumentError("documents: empty");
  if (limits_.max_documents > 0 && request.documents_size() > limits_.max_documents) {
    return absl::InvalidArgumentError("documents: more than limits.max_documents");
  }
  for (int i = 0; i < request.documents_size(); ++i) {
    KVC_RETURN_IF_ERROR(CheckDocument(request.documents(i), vocab, absl::StrCat("documents[", i, "]")));
  }
  auto call = std::make_shared<Call>();
  call->request = &request;
  KVC_ASSIGN_OR_RETURN(call->spec, ParseSpec(request.spec()));
  if (request.question_case() == CompressRequest::kSuffixIds) {
    KVC_RETURN_IF_ERROR(CheckTokenIds(request.suffix_ids(), vocab, "suffix_ids"));
  }
  KVC_ASSIGN_OR_RETURN(call->dtype, ParseCacheDtype(request.cache_dtype()));
  KVC_ASSIGN_OR_RETURN(call->codec, ParseCacheCodec(request.cache_codec()));
  // As the service's CompressCall: total_seconds counts from the end of the checks.
  call->arrival = absl::Now();

  // What CompressCall::PrepareAndLookUp does on the service's executor.
  auto prepare = [this, call]() -> absl::Status {
    const ModelRuntime& runtime = *runtime_;
    const CompressRequest& req = *call->request;
    const absl::Time tokenize_start = absl::Now();
    CacheIdInput id_input = CacheIdBase(runtime, call->spec.spec, call->dtype, call->codec);
    std::vector<int64_t> suffix;
    if (call->spec.query_aware) {
      KVC_ASSIGN_OR_RETURN(suffix, EncodeRequestSuffix(runtime, req, limits_.max_query_tokens));
      if (suffix.empty()) return absl::InvalidArgumentError("query: empty");
    }
    KVC_ASSIGN_OR_RETURN(
        EncodedContext context,
        EncodeRequestContext(runtime,
                             req.has_system_prompt() ? std::optional<std::string>(req.system_prompt()) : std::nullopt,
                             req.documents(), limits_.max_context_tokens));
    id_input.protected_prefix = context.protected_prefix;
    id_input.context = std::move(context.tokens);
    id_input.query = suffix;
    call->tokenize_seconds = SecondsSince(tokenize_start);

    KVC_ASSIGN_OR_RETURN(call->cache_id, ComputeCacheId(id_input));
    KVC_ASSIGN_OR_RETURN(std::optional<CacheInfo> stored,
                         builder_->FindStoredCache(call->cache_id, &call->store_seconds));
    metrics_->RecordCacheLookup(stored.has_value());
    if (stored.has_value()) {
      call->response.set_cache_id(call->cache_id);
      call->response.set_cache_hit(true);
      *call->response.mutable_info() = *std::move(stored);
      kvc::v1::Timings* t = call->response.mutable_info()->mutable_timings();
      t->set_store_seconds(call->store_seconds);
      t->set_total_seconds(SecondsSince(call->arrival));
      call->Finish(absl::OkStatus());
      return absl::OkStatus();
    }

    CacheBuildInput build;
    build.cache_id = call->cache_id;
    build.method = call->spec.method;
    build.canonical_spec = CanonicalSpecJson(id_input);
    build.encode.dtype = call->dtype;
    build.encode.codec = call->codec;
    build.protected_prefix = id_input.protected_prefix;
    build.context = std::move(id_input.context);
    build.suffix = std::move(suffix);
    builder_->Build(std::move(build), [call](absl::StatusOr<CacheInfo> info) {
      if (!info.ok()) return call->Finish(info.status());
      call->response.set_cache_id(call->cache_id);
      call->response.set_cache_hit(false);
      *call->response.mutable_info() = *std::move(info);
      kvc::v1::Timings* t = call->response.mutable_info()->mutable_timings();
      t->set_tokenize_seconds(call->tokenize_seconds);
      t->set_store_seconds(t->store_seconds() + call->store_seconds);
      t->set_total_seconds(SecondsSince(call->arrival));
      call->Finish(absl::OkStatus());
    });
    return absl::OkStatus();
  };
  KVC_RETURN_IF_ERROR(executor_->Submit([call, prepare] {
    absl::Status s = prepare();
    if (!s.ok()) call->Finish(s);
  }));
  call->done.WaitForNotification();
  if (!call->status.ok()) return call->status;
  return std::move(call->response);
}

}  // namespace kvc::bench
