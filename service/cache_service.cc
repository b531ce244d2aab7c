#include "service/cache_service.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <string>
#include <utility>

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "compressor/format/kvc_reader.h"
#include "compressor/util/sha256.h"
#include "compressor/util/status_macros.h"
#include "service/cache_info.h"
#include "service/grpc_status.h"

namespace kvc {
namespace {

using kvc::v1::CacheChunk;

constexpr int64_t kMaxUpfrontReserve = int64_t{64} << 20;

absl::Status Cancelled() { return absl::CancelledError("call cancelled by the client or its deadline"); }

// Keeps the code and puts `context` in front of the message, so a client learns which step failed.
absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, status.message()));
}

std::string Sha256Raw(absl::string_view bytes) {
  Sha256 hash;
  hash.Update(bytes);
  const std::array<uint8_t, 32> digest = hash.Final();
  return std::string(reinterpret_cast<const char*>(digest.data()), digest.size());
}

void ToTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return;
  const int64_t seconds = absl::ToUnixSeconds(t);  // floors, so nanos below is in [0, 1e9)
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
}

void ToCacheEntry(const CacheEntryInfo& entry, kvc::v1::CacheEntry* out) {
  out->set_cache_id(entry.id);
  out->set_bytes(entry.size_bytes);
  ToTimestamp(entry.created, out->mutable_created());
  ToTimestamp(entry.last_access, out->mutable_last_access());
}

// Runs `work` on the executor and finishes the unary call with its status; returns the call's reactor. The
// request and response that `work` touches stay valid until Finish, which is the last thing that happens.
// DefaultReactor() constructs the reactor in place on each call, so it is taken exactly once, here or in
// FinishUnary.
grpc::ServerUnaryReactor* RunUnary(Executor* executor, grpc::CallbackServerContext* ctx,
                                   std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status submitted = executor->Submit([ctx, reactor, work = std::move(work)] {
    // The call may have waited in the queue past its deadline; then the store need not be touched.
    reactor->Finish(ToGrpcStatus(ctx->IsCancelled() ? Cancelled() : work()));
  });
  if (!submitted.ok()) reactor->Finish(ToGrpcStatus(submitted));
  return reactor;
}

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Get: loads the value and builds the header on the executor, then streams from gRPC's callbacks with one
// write in flight. Finish is called exactly once, from whichever step ends the call; after it the reactor
// may be deleted (OnDone) at any moment, so nothing touches `this` after Finish.
class GetReactor final : public grpc::ServerWriteReactor<CacheChunk> {
 public:
  GetReactor(grpc::CallbackServerContext* ctx, CacheStore* store, std::string id, size_t chunk_bytes)
      : ctx_(ctx), store_(store), id_(std::move(id)), chunk_bytes_(chunk_bytes) {}

  void Start(Executor* executor) {
    absl::Status submitted = executor->Submit([this] { Load(); });
    if (!submitted.ok()) FinishOnce(submitted);
  }

  void FinishOnce(const absl::Status& status) {
    if (finished_.exchange(true)) return;
    Finish(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override {
    // !ok: the stream is broken (the client went away); the code the client sees no longer matters.
    if (!ok || ctx_->IsCancelled()) return FinishOnce(Cancelled());
    if (offset_ == bytes_.size()) return FinishOnce(absl::OkStatus());
    const size_t n = std::min(chunk_bytes_, bytes_.size() - offset_);
    chunk_.set_data(bytes_.data() + offset_, n);
    offset_ += n;
    StartWrite(&chunk_);
  }

  void OnDone() override { delete this; }

 private:
  // On the executor: the store read and the SHA-256 of the whole value are the slow parts.
  void Load() {
    absl::StatusOr<std::unique_ptr<CacheValue>> value = store_->GetValue(id_);
    if (!value.ok()) return FinishOnce(value.status());
    value_ = std::move(*value);
    bytes_ = value_->bytes();
    absl::StatusOr<KvcHeader> header = KvcReader::ReadHeader(bytes_);
    if (!header.ok()) return FinishOnce(WithContext(header.status(), "stored value is not a readable .kvc: "));
    kvc::v1::CacheHeader* h = chunk_.mutable_header();
    h->set_cache_id(id_);
    h->set_total_bytes(static_cast<int64_t>(bytes_.size()));
    h->set_sha256(Sha256Raw(bytes_));
    *h->mutable_info() = CacheInfoFromHeader(*header, id_, static_cast<int64_t>(bytes_.size()));
    if (ctx_->IsCancelled()) return FinishOnce(Cancelled());
    StartWrite(&chunk_);
  }

  grpc::CallbackServerContext* const ctx_;
  CacheStore* const store_;
  const std::string id_;
  const size_t chunk_bytes_;
  std::unique_ptr<CacheValue> value_;  // keeps bytes_ valid (a file map or an owned copy)
  absl::string_view bytes_;
  size_t offset_ = 0;      // bytes of the value already handed to StartWrite
  CacheChunk chunk_;       // the one message in flight; reused once its write is done
  std::atomic<bool> finished_{false};
};

// Put: checks each chunk as it arrives on gRPC's callbacks (cheap: bounds and appends), then verifies and
// stores the complete value on the executor. Errors finish the call at once without reading the rest.
class PutReactor final : public grpc::ServerReadReactor<CacheChunk> {
 public:
  PutReactor(grpc::CallbackServerContext* ctx, CacheStore* store, Executor* executor, int64_t max_value_bytes,
             kvc::v1::PutCacheResponse* response)
      : ctx_(ctx), store_(store), executor_(executor), max_value_bytes_(max_value_bytes), response_(response) {
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed its side (or the call broke): the value is complete or never will be.
      if (ctx_->IsCancelled()) return FinishOnce(Cancelled());
      absl::Status complete = CheckComplete();
      if (!complete.ok()) return FinishOnce(complete);
      absl::Status submitted = executor_->Submit([this] { FinishOnce(VerifyAndStore()); });
      if (!submitted.ok()) FinishOnce(submitted);
      return;
    }
    absl::Status accepted = Accept();
    if (!accepted.ok()) return FinishOnce(accepted);
    StartRead(&chunk_);
  }

  void OnDone() override { delete this; }

 private:
  void FinishOnce(const absl::Status& status) {
    if (finished_.exchange(true)) return;
    Finish(ToGrpcStatus(status));
  }

  absl::Status Accept() {
    switch (chunk_.chunk_case()) {
      case CacheChunk::kHeader:
        if (have_header_) return absl::InvalidArgumentError("header: a second header; it must come only first");
        have_header_ = true;
        return AcceptHeader(chunk_.header());
      case CacheChunk::kData: {
        if (!have_header_) return absl::InvalidArgumentError("header: the stream must start with a header, not data");
        const std::string& data = chunk_.data();
        if (data.empty() || data.size() > static_cast<size_t>(kMaxCacheChunkBytes)) {
          return absl::InvalidArgumentError(
              absl::StrCat("data: ", data.size(), " bytes in one chunk, must be 1 to ", kMaxCacheChunkBytes));
        }
        if (static_cast<int64_t>(buffer_.size() + data.size()) > total_bytes_) {
          return absl::InvalidArgumentError(absl::StrCat("data: more than header.total_bytes (", total_bytes_,
                                                         ") bytes sent"));
        }
        buffer_.append(data);
        return absl::OkStatus();
      }
      case CacheChunk::CHUNK_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError("chunk: neither header nor data is set");
  }

  absl::Status AcceptHeader(const kvc::v1::CacheHeader& header) {
    KVC_RETURN_IF_ERROR(ValidateCacheId(header.cache_id()));
    if (header.total_bytes() <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("header.total_bytes: ", header.total_bytes(), ", must be >= 1"));
    }
    if (header.sha256().size() != 32) {
      return absl::InvalidArgumentError(
          absl::StrCat("header.sha256: ", header.sha256().size(), " bytes, must be the 32 raw bytes of a SHA-256"));
    }
    if (header.total_bytes() > max_value_bytes_) {
      return absl::ResourceExhaustedError(absl::StrCat("header.total_bytes: ", header.total_bytes(),
                                                       " bytes, this server stores values of at most ",
                                                       max_value_bytes_));
    }
    id_ = header.cache_id();
    total_bytes_ = header.total_bytes();
    sha256_ = header.sha256();
    // Reserve up to a point only: a client may announce a large value and then send nothing, and its
    // promise should not hold memory. Larger values grow the buffer as their bytes actually arrive.
    buffer_.reserve(static_cast<size_t>(std::min<int64_t>(total_bytes_, kMaxUpfrontReserve)));
    return absl::OkStatus();
  }

  absl::Status CheckComplete() const {
    if (!have_header_) return absl::InvalidArgumentError("header: the stream ended before a header was sent");
    if (static_cast<int64_t>(buffer_.size()) < total_bytes_) {
      return absl::DataLossError(absl::StrCat("data: the stream ended after ", buffer_.size(),
                                              " bytes, header.total_bytes is ", total_bytes_));
    }
    return absl::OkStatus();
  }

  // On the executor. Nothing is stored unless every check passes.
  absl::Status VerifyAndStore() {
    const std::string digest = Sha256Raw(buffer_);
    if (digest != sha256_) {
      return absl::DataLossError(absl::StrCat("header.sha256: the value's SHA-256 is ", absl::BytesToHexString(digest),
                                              ", the header says ", absl::BytesToHexString(sha256_)));
    }
    absl::StatusOr<std::unique_ptr<KvcReader>> reader = KvcReader::Open(buffer_);
    if (!reader.ok()) return WithContext(reader.status(), "value is not a valid .kvc: ");
    kvc::v1::CacheInfo info = CacheInfoFromHeader((*reader)->header(), id_, total_bytes_);
    reader->reset();
    absl::StatusOr<CacheEntryInfo> before = store_->Stat(id_);
    if (!before.ok() && !absl::IsNotFound(before.status())) return before.status();
    if (ctx_->IsCancelled()) return Cancelled();
    KVC_RETURN_IF_ERROR(store_->Put(id_, buffer_));
    response_->set_cache_id(id_);
    *response_->mutable_info() = std::move(info);
    response_->set_replaced(before.ok());
    return absl::OkStatus();
  }

  grpc::CallbackServerContext* const ctx_;
  CacheStore* const store_;
  Executor* const executor_;
  const int64_t max_value_bytes_;
  kvc::v1::PutCacheResponse* const response_;
  CacheChunk chunk_;  // the message being read
  bool have_header_ = false;
  std::string id_;
  int64_t total_bytes_ = 0;
  std::string sha256_;
  std::string buffer_;  // the value so far, at most total_bytes_
  std::atomic<bool> finished_{false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<CacheServiceImpl>> CacheServiceImpl::Create(CacheStore* store,
                                                                           const CacheServiceOptions& options) {
  if (store == nullptr) return absl::InvalidArgumentError("cache service: no store");
  if (options.max_value_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache service max_value_bytes: ", options.max_value_bytes, ", must be >= 1"));
  }
  if (options.default_chunk_bytes < 1 || options.default_chunk_bytes > kMaxCacheChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat("cache service default_chunk_bytes: ", options.default_chunk_bytes,
                                                   ", must be 1 to ", kMaxCacheChunkBytes));
  }
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<Executor> executor, Executor::Create(options.executor));
  return std::unique_ptr<CacheServiceImpl>(new CacheServiceImpl(store, options, std::move(executor)));
}

CacheServiceImpl::CacheServiceImpl(CacheStore* store, const CacheServiceOptions& options,
                                   std::unique_ptr<Executor> executor)
    : store_(store), options_(options), executor_(std::move(executor)) {}

CacheServiceImpl::~CacheServiceImpl() = default;

grpc::ServerWriteReactor<CacheChunk>* CacheServiceImpl::Get(grpc::CallbackServerContext* ctx,
                                                            const kvc::v1::GetCacheRequest* request) {
  absl::Status valid = ValidateCacheId(request->cache_id());
  if (valid.ok() && request->has_chunk_bytes() &&
      (request->chunk_bytes() < 0 || request->chunk_bytes() > kMaxCacheChunkBytes)) {
    valid = absl::InvalidArgumentError(
        absl::StrCat("chunk_bytes: ", request->chunk_bytes(), ", must be 0 to ", kMaxCacheChunkBytes));
  }
  const int32_t chunk_bytes = request->chunk_bytes() > 0 ? request->chunk_bytes() : options_.default_chunk_bytes;
  auto* reactor = new GetReactor(ctx, store_, request->cache_id(), static_cast<size_t>(chunk_bytes));
  if (!valid.ok()) {
    reactor->FinishOnce(valid);
  } else {
    reactor->Start(executor_.get());
  }
  return reactor;
}

grpc::ServerReadReactor<CacheChunk>* CacheServiceImpl::Put(grpc::CallbackServerContext* ctx,
                                                           kvc::v1::PutCacheResponse* response) {
  return new PutReactor(ctx, store_, executor_.get(), options_.max_value_bytes, response);
}

grpc::ServerUnaryReactor* CacheServiceImpl::Stat(grpc::CallbackServerContext* ctx,
                                                 const kvc::v1::StatCacheRequest* request,
                                                 kvc::v1::StatCacheResponse* response) {
  if (absl::Status valid = ValidateCacheId(request->cache_id()); !valid.ok()) return FinishUnary(ctx, valid);
  return RunUnary(executor_.get(), ctx, [this, request, response]() -> absl::Status {
    const std::string& id = request->cache_id();
    KVC_ASSIGN_OR_RETURN(CacheEntryInfo entry, store_->Stat(id));
    ToCacheEntry(entry, response->mutable_entry());
    if (request->include_info()) {
      KVC_ASSIGN_OR_RETURN(std::unique_ptr<CacheValue> value, store_->GetValue(id));
      absl::StatusOr<KvcHeader> header = KvcReader::ReadHeader(value->bytes());
      if (!header.ok()) return WithContext(header.status(), "stored value is not a readable .kvc: ");
      *response->mutable_info() = CacheInfoFromHeader(*header, id, static_cast<int64_t>(value->bytes().size()));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CacheServiceImpl::Delete(grpc::CallbackServerContext* ctx,
                                                   const kvc::v1::DeleteCacheRequest* request,
                                                   kvc::v1::DeleteCacheResponse* response) {
  if (absl::Status valid = ValidateCacheId(request->cache_id()); !valid.ok()) return FinishUnary(ctx, valid);
  return RunUnary(executor_.get(), ctx, [this, request] { return store_->Delete(request->cache_id()); });
}

grpc::ServerUnaryReactor* CacheServiceImpl::List(grpc::CallbackServerContext* ctx,
                                                 const kvc::v1::ListCachesRequest* request,
                                                 kvc::v1::ListCachesResponse* response) {
  // The store validates prefix, page_size and page_token with the messages the proto documents; only the
  // sign of page_size is checked here so that a bad request never waits in the queue.
  if (request->page_size() < 0) {
    return FinishUnary(ctx, absl::InvalidArgumentError(
                                absl::StrCat("page_size: ", request->page_size(), ", must be >= 0")));
  }
  return RunUnary(executor_.get(), ctx, [this, request, response]() -> absl::Status {
    KVC_ASSIGN_OR_RETURN(ListPage page, store_->List(request->prefix(), request->page_size(), request->page_token()));
    for (const CacheEntryInfo& entry : page.entries) ToCacheEntry(entry, response->add_entries());
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

}  // namespace kvc
