#include "client/cpp/testing/fake_services.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "compressor/util/sha256.h"

namespace kvc::testing {
namespace {

// Finishes only when the call is cancelled (client cancel or deadline).
class HangingReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { Finish(grpc::Status::CANCELLED); }
  void OnDone() override { delete this; }
};

grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* ctx, grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

std::string DocumentText(const kvc::v1::Document& document) {
  if (document.has_text()) return document.text();
  std::string text;
  for (int id : document.token_ids().ids()) absl::StrAppend(&text, id, ",");
  return text;
}

kvc::v1::CacheInfo FakeInfo(const std::string& id, int64_t chars, const kvc::v1::CompressionSpec& spec) {
  kvc::v1::CacheInfo info;
  info.set_cache_id(id);
  info.set_model("fake-model");
  info.set_model_fingerprint(std::string(64, 'f'));
  *info.mutable_spec() = spec;
  if (info.spec().method().empty()) info.mutable_spec()->set_method("focus");
  info.set_tokens_in(chars);
  info.set_tokens_out(std::max<int64_t>(1, chars / 4));
  info.set_prefix_tokens(3);
  info.set_next_position(chars);
  info.set_bytes(1000 + chars);
  info.set_layers(2);
  info.set_kv_heads(1);
  info.set_head_dim(8);
  info.set_dtype(kvc::v1::CACHE_DTYPE_F32);
  info.set_codec(kvc::v1::CACHE_CODEC_NONE);
  info.set_format_version("1.0");
  info.mutable_timings()->set_prefill_seconds(0.25);
  info.mutable_timings()->set_total_seconds(0.5);
  return info;
}

// Writes a fixed list of messages one at a time, then finishes with `final_status`.
class ScriptedWriter final : public grpc::ServerWriteReactor<kvc::v1::GenerateResponse> {
 public:
  ScriptedWriter(std::vector<kvc::v1::GenerateResponse> messages, grpc::Status final_status)
      : messages_(std::move(messages)), final_status_(std::move(final_status)) {
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (next_ < messages_.size()) {
      StartWrite(&messages_[next_++]);
    } else {
      Finish(final_status_);
    }
  }
  std::vector<kvc::v1::GenerateResponse> messages_;
  const grpc::Status final_status_;
  size_t next_ = 0;
};

}  // namespace

grpc::ServerUnaryReactor* FakeCompressor::Begin(grpc::CallbackServerContext* ctx) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find("authorization");
  last_authorization_ = it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
  if (hang_) {
    auto* reactor = new HangingReactor();
    return reactor;
  }
  if (!failures_.empty()) {
    grpc::Status status = failures_.front();
    failures_.pop_front();
    return Finished(ctx, status);
  }
  return nullptr;
}

grpc::ServerUnaryReactor* FakeCompressor::Compress(grpc::CallbackServerContext* ctx,
                                                   const kvc::v1::CompressRequest* request,
                                                   kvc::v1::CompressResponse* response) {
  if (grpc::ServerUnaryReactor* done = Begin(ctx)) return done;
  std::string text;
  for (const kvc::v1::Document& d : request->documents()) text += DocumentText(d);
  for (const std::string& id : request->document_cache_ids()) text += id;
  const std::string id = Sha256Hex(absl::StrCat(text, "\n", request->query()));
  bool hit;
  {
    absl::MutexLock lock(&mu_);
    last_compress_ = *request;
    hit = !stored_.insert(id).second;
  }
  response->set_cache_id(id);
  response->set_cache_hit(hit);
  *response->mutable_info() = FakeInfo(id, static_cast<int64_t>(text.size()), request->spec());
  return Finished(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* FakeCompressor::Precompute(grpc::CallbackServerContext* ctx,
                                                     const kvc::v1::PrecomputeRequest* request,
                                                     kvc::v1::PrecomputeResponse* response) {
  if (grpc::ServerUnaryReactor* done = Begin(ctx)) return done;
  if (request->documents().empty()) return Finished(ctx, grpc::Status(grpc::INVALID_ARGUMENT, "documents: empty"));
  for (const kvc::v1::Document& d : request->documents()) {
    const std::string text = DocumentText(d);
    if (text.empty()) {
      return Finished(ctx, grpc::Status(grpc::INVALID_ARGUMENT, "documents[0].text: empty"));
    }
    const std::string id = Sha256Hex(absl::StrCat(d.id(), "\n", text));
    bool hit;
    {
      absl::MutexLock lock(&mu_);
      hit = !stored_.insert(id).second;
      if (!hit) ++precomputed_;
    }
    kvc::v1::PrecomputeResult* r = response->add_results();
    if (d.has_id()) r->set_document_id(d.id());
    r->set_cache_id(id);
    r->set_cache_hit(hit);
    *r->mutable_info() = FakeInfo(id, static_cast<int64_t>(text.size()), request->spec());
  }
  return Finished(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* FakeCompressor::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                       const kvc::v1::GetModelInfoRequest*,
                                                       kvc::v1::ModelInfo* response) {
  if (grpc::ServerUnaryReactor* done = Begin(ctx)) return done;
  response->set_name("fake-model");
  response->set_fingerprint(std::string(64, 'f'));
  response->set_architecture("llama");
  response->set_num_layers(2);
  response->set_num_heads(4);
  response->set_num_kv_heads(1);
  response->set_head_dim(8);
  response->set_vocab_size(512);
  response->set_max_position_embeddings(2048);
  response->set_device("cpu");
  response->set_dtype("f32");
  response->set_chat_format("chatml");
  response->set_bos_token_id(1);
  response->add_eos_token_ids(2);
  kvc::v1::MethodInfo* finch = response->add_methods();
  finch->set_name("finch");
  finch->set_query_aware(true);
  kvc::v1::MethodOption* chunk = finch->add_options();
  chunk->set_name("chunk_tokens");
  chunk->set_default_value("2048");
  chunk->set_description("Tokens per prefill chunk");
  response->add_methods()->set_name("knorm");
  response->mutable_limits()->set_max_documents(64);
  response->set_format_version("1.0");
  return Finished(ctx, grpc::Status::OK);
}

void FakeCompressor::FailNext(std::vector<grpc::Status> failures) {
  absl::MutexLock lock(&mu_);
  failures_.insert(failures_.end(), failures.begin(), failures.end());
}

void FakeCompressor::SetHang(bool hang) {
  absl::MutexLock lock(&mu_);
  hang_ = hang;
}

int FakeCompressor::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

int FakeCompressor::precomputed_documents() const {
  absl::MutexLock lock(&mu_);
  return precomputed_;
}

std::string FakeCompressor::last_authorization() const {
  absl::MutexLock lock(&mu_);
  return last_authorization_;
}

kvc::v1::CompressRequest FakeCompressor::last_compress_request() const {
  absl::MutexLock lock(&mu_);
  return last_compress_;
}

FakeGenerator::FakeGenerator() : deltas_({"Hello", ", ", "world"}) {}

grpc::ServerWriteReactor<kvc::v1::GenerateResponse>* FakeGenerator::Generate(
    grpc::CallbackServerContext* ctx, const kvc::v1::GenerateRequest* request) {
  std::vector<kvc::v1::GenerateResponse> messages;
  grpc::Status final_status = grpc::Status::OK;
  {
    absl::MutexLock lock(&mu_);
    ++calls_;
    last_request_ = *request;
    if (!failures_.empty()) {
      final_status = failures_.front();
      failures_.pop_front();
      return new ScriptedWriter({}, final_status);
    }
    // Each question (one for a query) gets the configured deltas and a usage of its own.
    const int questions = request->has_questions() ? request->questions().queries_size() : 1;
    for (int question = 0; question < questions; ++question) {
      int index = 0;
      for (const std::string& text : deltas_) {
        kvc::v1::TextDelta* delta = messages.emplace_back().mutable_delta();
        delta->set_text(text);
        delta->add_token_ids(100 + index);
        delta->set_index(index++);
        delta->set_question(question);
        if (fail_after_first_) break;
      }
      if (fail_after_first_) {
        fail_after_first_ = false;
        return new ScriptedWriter(std::move(messages), after_first_status_);
      }
      kvc::v1::Usage* usage = messages.emplace_back().mutable_usage();
      usage->set_cached_tokens(40);
      usage->set_prompt_tokens(7);
      usage->set_generated_tokens(index);
      usage->set_finish_reason(kvc::v1::FINISH_REASON_EOS);
      usage->set_time_to_first_token_seconds(0.125);
      usage->mutable_timings()->set_decode_seconds(0.5);
      usage->mutable_timings()->set_mean_seconds_per_token(0.25);
      usage->mutable_timings()->set_total_seconds(0.75);
      usage->set_question(question);
    }
  }
  return new ScriptedWriter(std::move(messages), final_status);
}

void FakeGenerator::SetDeltas(std::vector<std::string> texts) {
  absl::MutexLock lock(&mu_);
  deltas_ = std::move(texts);
}

void FakeGenerator::FailNext(std::vector<grpc::Status> failures) {
  absl::MutexLock lock(&mu_);
  failures_.insert(failures_.end(), failures.begin(), failures.end());
}

void FakeGenerator::FailAfterFirstDelta(grpc::Status status) {
  absl::MutexLock lock(&mu_);
  fail_after_first_ = true;
  after_first_status_ = std::move(status);
}

int FakeGenerator::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

kvc::v1::GenerateRequest FakeGenerator::last_request() const {
  absl::MutexLock lock(&mu_);
  return last_request_;
}

}  // namespace kvc::testing
