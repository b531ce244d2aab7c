#include "service/role_gate.h"

namespace kvc {
namespace {

const grpc::Status& NotReady() {
  static const grpc::Status* status =
      new grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is still loading; retry shortly");
  return *status;
}

grpc::ServerUnaryReactor* FinishNotReady(grpc::CallbackServerContext* ctx) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(NotReady());
  return reactor;
}

// A stream that ends before its first message.
class NotReadyWriter final : public grpc::ServerWriteReactor<kvc::v1::GenerateResponse> {
 public:
  NotReadyWriter() { Finish(NotReady()); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerUnaryReactor* CompressorGate::Compress(grpc::CallbackServerContext* ctx,
                                                   const kvc::v1::CompressRequest* request,
                                                   kvc::v1::CompressResponse* response) {
  auto* s = service_.load(std::memory_order_acquire);
  return s != nullptr ? s->Compress(ctx, request, response) : FinishNotReady(ctx);
}

grpc::ServerUnaryReactor* CompressorGate::Precompute(grpc::CallbackServerContext* ctx,
                                                     const kvc::v1::PrecomputeRequest* request,
                                                     kvc::v1::PrecomputeResponse* response) {
  auto* s = service_.load(std::memory_order_acquire);
  return s != nullptr ? s->Precompute(ctx, request, response) : FinishNotReady(ctx);
}

grpc::ServerUnaryReactor* CompressorGate::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                       const kvc::v1::GetModelInfoRequest* request,
                                                       kvc::v1::ModelInfo* response) {
  auto* s = service_.load(std::memory_order_acquire);
  return s != nullptr ? s->GetModelInfo(ctx, request, response) : FinishNotReady(ctx);
}

grpc::ServerWriteReactor<kvc::v1::GenerateResponse>* GeneratorGate::Generate(
    grpc::CallbackServerContext* ctx, const kvc::v1::GenerateRequest* request) {
  auto* s = service_.load(std::memory_order_acquire);
  return s != nullptr ? s->Generate(ctx, request) : new NotReadyWriter();
}

}  // namespace kvc
