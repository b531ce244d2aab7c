#include "client/cpp/kvc_client.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cpp/client_channel.h"
#include "client/cpp/grpc_status_conversion.h"
#include "client/cpp/retry_policy.h"
#include "compressor/util/status_macros.h"

namespace kvc {
namespace {

using client_internal::StatusFromGrpc;

absl::Status ValidateOptions(const ClientOptions& options) {
  KVC_RETURN_IF_ERROR(ValidateRetryPolicy(options.retry));
  if (options.default_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_deadline: must be positive (InfiniteDuration for none)");
  }
  if (options.put_chunk_bytes < 1 || options.put_chunk_bytes > (1 << 20)) {
    return absl::InvalidArgumentError("put_chunk_bytes: must be in [1, 1048576]");
  }
  return absl::OkStatus();
}

// A server that breaks the stream protocol ends the call on the client: cancel, drain, report.
template <typename Reader>
absl::Status AbandonStream(grpc::ClientContext* context, Reader& reader, absl::Status why) {
  context->TryCancel();
  reader->Finish();
  return why;
}

}  // namespace

const char* ServingStatusName(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    case ServingStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<KvcClient>> KvcClient::Create(const ClientOptions& options) {
  KVC_RETURN_IF_ERROR(ValidateOptions(options));
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, MakeClientChannel(options));
  return std::unique_ptr<KvcClient>(new KvcClient(std::move(channel), options));
}

absl::StatusOr<std::unique_ptr<KvcClient>> KvcClient::CreateWithChannel(std::shared_ptr<grpc::Channel> channel,
                                                                        const ClientOptions& options) {
  if (channel == nullptr) return absl::InvalidArgumentError("channel: null");
  KVC_RETURN_IF_ERROR(ValidateOptions(options));
  return std::unique_ptr<KvcClient>(new KvcClient(std::move(channel), options));
}

KvcClient::KvcClient(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options)
    : options_(options),
      channel_(std::move(channel)),
      compressor_(kvc::v1::Compressor::NewStub(channel_)),
      generator_(kvc::v1::Generator::NewStub(channel_)),
      cache_(kvc::v1::CacheService::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

double KvcClient::UniformDraw() {
  absl::MutexLock lock(&jitter_mu_);
  return absl::Uniform<double>(jitter_gen_, 0.0, 1.0);
}

absl::Status KvcClient::Call(const CallOptions& call, const Attempt& attempt) {
  const absl::Duration timeout = call.timeout != absl::ZeroDuration() ? call.timeout : options_.default_deadline;
  const absl::Time deadline =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  for (int attempt_number = 1;; ++attempt_number) {
    grpc::ClientContext context;
    if (deadline != absl::InfiniteFuture()) context.set_deadline(absl::ToChronoTime(deadline));
    if (!options_.bearer_token.empty()) {
      context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.bearer_token));
    }
    bool delivered = false;
    absl::Status status = attempt(&context, &delivered);
    if (status.ok() || delivered || !IsRetryableCode(status.code()) ||
        attempt_number >= options_.retry.max_attempts) {
      return status;
    }
    const absl::Duration wait = RetryBackoff(options_.retry, attempt_number, UniformDraw());
    // Waiting past the deadline would only turn this UNAVAILABLE into a less telling DEADLINE_EXCEEDED.
    if (absl::Now() + wait >= deadline) return status;
    absl::SleepFor(wait);
  }
}

absl::StatusOr<kvc::v1::CompressResponse> KvcClient::Compress(const kvc::v1::CompressRequest& request,
                                                              const CallOptions& call) {
  kvc::v1::CompressResponse response;
  KVC_RETURN_IF_ERROR(Call(call, [&](grpc::ClientContext* context, bool*) {
    response.Clear();
    return StatusFromGrpc(compressor_->Compress(context, request, &response));
  }));
  return response;
}

absl::StatusOr<kvc::v1::PrecomputeResponse> KvcClient::Precompute(const kvc::v1::PrecomputeRequest& request,
                                                                  const CallOptions& call) {
  kvc::v1::PrecomputeResponse response;
  KVC_RETURN_IF_ERROR(Call(call, [&](grpc::ClientContext* context, bool*) {
    response.Clear();
    return StatusFromGrpc(compressor_->Precompute(context, request, &response));
  }));
  return response;
}

absl::StatusOr<kvc::v1::ModelInfo> KvcClient::GetModelInfo(const CallOptions& call) {
  const kvc::v1::GetModelInfoRequest request;
  kvc::v1::ModelInfo response;
  KVC_RETURN_IF_ERROR(Call(call, [&](grpc::ClientContext* context, bool*) {
    response.Clear();
    return StatusFromGrpc(compressor_->GetModelInfo(context, request, &response));
  }));
  return response;
}

absl::StatusOr<kvc::v1::Usage> KvcClient::Generate(const kvc::v1::GenerateRequest& request,
                                                   const DeltaCallback& on_delta, const CallOptions& call) {
  KVC_ASSIGN_OR_RETURN(std::vector<kvc::v1::Usage> usages, GenerateAnswers(request, on_delta, nullptr, call));
  if (usages.empty()) return absl::InternalError("Generator.Generate: the stream ended without usage");
  return std::move(usages.back());
}

absl::StatusOr<std::vector<kvc::v1::Usage>> KvcClient::GenerateAnswers(const kvc::v1::GenerateRequest& request,
                                                                       const DeltaCallback& on_delta,
                                                                       const UsageCallback& on_usage,
                                                                       const CallOptions& call) {
  const int questions = request.has_questions() ? request.questions().queries_size() : 1;
  std::vector<kvc::v1::Usage> usages;
  KVC_RETURN_IF_ERROR(Call(call, [&](grpc::ClientContext* context, bool* delivered) -> absl::Status {
    usages.clear();
    std::unique_ptr<grpc::ClientReader<kvc::v1::GenerateResponse>> reader = generator_->Generate(context, request);
    kvc::v1::GenerateResponse message;
    while (reader->Read(&message)) {
      *delivered = true;
      const int answering = static_cast<int>(usages.size());
      if (answering == questions) {
        return AbandonStream(context, reader, absl::InternalError("Generator.Generate: a message after the usage"));
      }
      const int question = message.has_delta() ? message.delta().question() : message.usage().question();
      if ((message.has_delta() || message.has_usage()) && question != answering) {
        return AbandonStream(context, reader,
                             absl::InternalError(absl::StrCat("Generator.Generate: a message of question ", question,
                                                              " while question ", answering, " is answered")));
      }
      if (message.has_delta()) {
        if (on_delta) on_delta(message.delta());
      } else if (message.has_usage()) {
        usages.push_back(std::move(*message.mutable_usage()));
        if (on_usage) on_usage(usages.back());
      } else {
        return AbandonStream(context, reader,
                             absl::InternalError("Generator.Generate: a message with neither delta nor usage"));
      }
    }
    KVC_RETURN_IF_ERROR(StatusFromGrpc(reader->Finish()));
    if (static_cast<int>(usages.size()) < questions) {
      return absl::InternalError("Generator.Generate: the stream ended without usage");
    }
    return absl::OkStatus();
  }));
  return usages;
}

absl::StatusOr<FetchedCache> KvcClient::GetCache(const std::string& cache_id, const CallOptions& call) {
  kvc::v1::GetCacheRequest request;
  request.set_cache_id(cache_id);
  std::optional<FetchedCache> fetched;
  KVC_RETURN_IF_ERROR(Call(call, [&](grpc::ClientContext* context, bool* delivered) -> absl::Status {
    CacheAssembler assembler(cache_id);
    std::unique_ptr<grpc::ClientReader<kvc::v1::CacheChunk>> reader = cache_->Get(context, request);
    kvc::v1::CacheChunk chunk;
    while (reader->Read(&chunk)) {
      *delivered = true;
      absl::Status added = assembler.Add(chunk);
      if (!added.ok()) return AbandonStream(context, reader, std::move(added));
    }
    KVC_RETURN_IF_ERROR(StatusFromGrpc(reader->Finish()));
    KVC_ASSIGN_OR_RETURN(fetched, std::move(assembler).Finish());
    return absl::OkStatus();
  }));
  return *std::move(fetched);
}

absl::StatusOr<kvc::v1::PutCacheResponse> KvcClient::PutCache(const std::string& cache_id, absl::string_view value,
                                                              const CallOptions& call) {
  const kvc::v1::CacheChunk header = MakePutHeader(cache_id, value);
  const std::vector<absl::string_view> pieces = SplitIntoChunks(value, options_.put_chunk_bytes);
  kvc::v1::PutCacheResponse response;
  // The whole value is in memory, and a Put that failed with UNAVAILABLE stored nothing, so every attempt
  // can start over.
  KVC_RETURN_IF_ERROR(Call(call, [&](grpc::ClientContext* context, bool*) {
    response.Clear();
    std::unique_ptr<grpc::ClientWriter<kvc::v1::CacheChunk>> writer = cache_->Put(context, &response);
    // A failed Write means the server has already answered; Finish says how.
    bool open = writer->Write(header);
    kvc::v1::CacheChunk data;
    for (size_t i = 0; open && i < pieces.size(); ++i) {
      data.set_data(pieces[i].data(), pieces[i].size());
      open = writer->Write(data);
    }
    if (open) writer->WritesDone();
    return StatusFromGrpc(writer->Finish());
  }));
  return response;
}

absl::StatusOr<kvc::v1::StatCacheResponse> KvcClient::StatCache(const std::string& cache_id, bool include_info,
                                                                const CallOptions& call) {
  kvc::v1::StatCacheRequest request;
  request.set_cache_id(cache_id);
  request.set_include_info(include_info);
  kvc::v1::StatCacheResponse response;
  KVC_RETURN_IF_ERROR(Call(call, [&](grpc::ClientContext* context, bool*) {
    response.Clear();
    return StatusFromGrpc(cache_->Stat(context, request, &response));
  }));
  return response;
}

absl::Status KvcClient::DeleteCache(const std::string& cache_id, const CallOptions& call) {
  kvc::v1::DeleteCacheRequest request;
  request.set_cache_id(cache_id);
  return Call(call, [&](grpc::ClientContext* context, bool*) {
    kvc::v1::DeleteCacheResponse response;
    return StatusFromGrpc(cache_->Delete(context, request, &response));
  });
}

absl::StatusOr<kvc::v1::ListCachesResponse> KvcClient::ListCaches(const kvc::v1::ListCachesRequest& request,
                                                                  const CallOptions& call) {
  kvc::v1::ListCachesResponse response;
  KVC_RETURN_IF_ERROR(Call(call, [&](grpc::ClientContext* context, bool*) {
    response.Clear();
    return StatusFromGrpc(cache_->List(context, request, &response));
  }));
  return response;
}

absl::StatusOr<ServingStatus> KvcClient::Health(const std::string& service, const CallOptions& call) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  KVC_RETURN_IF_ERROR(Call(call, [&](grpc::ClientContext* context, bool*) {
    response.Clear();
    return StatusFromGrpc(health_->Check(context, request, &response));
  }));
  switch (response.status()) {
    case grpc::health::v1::HealthCheckResponse::SERVING:
      return ServingStatus::kServing;
    case grpc::health::v1::HealthCheckResponse::NOT_SERVING:
      return ServingStatus::kNotServing;
    case grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN:
      return ServingStatus::kServiceUnknown;
    default:
      return ServingStatus::kUnknown;
  }
}

}  // namespace kvc
