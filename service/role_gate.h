// Role gates: a role's gRPC service is registered when the server starts, before its model is loaded (gRPC
// takes no services after start), so that health checks answer NOT_SERVING instead of connection errors
// while a large model loads. Until Open hands over the real service, every call finishes at once with
// UNAVAILABLE; afterwards calls go straight to it.
//
// Ownership: the gate borrows the service given to Open; it must outlive the grpc::Server.
// Thread safety: Open may run on any thread while calls arrive; each call reads the service once.
#ifndef KVC_SERVICE_ROLE_GATE_H_
#define KVC_SERVICE_ROLE_GATE_H_

#include <atomic>

#include <grpcpp/grpcpp.h>

#include "proto/kvc/v1/compressor.grpc.pb.h"
#include "proto/kvc/v1/generator.grpc.pb.h"

namespace kvc {

class CompressorGate final : public kvc::v1::Compressor::CallbackService {
 public:
  void Open(kvc::v1::Compressor::CallbackService* service) { service_.store(service, std::memory_order_release); }

  grpc::ServerUnaryReactor* Compress(grpc::CallbackServerContext* ctx, const kvc::v1::CompressRequest* request,
                                     kvc::v1::CompressResponse* response) override;
  grpc::ServerUnaryReactor* Precompute(grpc::CallbackServerContext* ctx, const kvc::v1::PrecomputeRequest* request,
                                       kvc::v1::PrecomputeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const kvc::v1::GetModelInfoRequest* request,
                                         kvc::v1::ModelInfo* response) override;

 private:
  std::atomic<kvc::v1::Compressor::CallbackService*> service_{nullptr};
};

class GeneratorGate final : public kvc::v1::Generator::CallbackService {
 public:
  void Open(kvc::v1::Generator::CallbackService* service) { service_.store(service, std::memory_order_release); }

  grpc::ServerWriteReactor<kvc::v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                                const kvc::v1::GenerateRequest* request) override;

 private:
  std::atomic<kvc::v1::Generator::CallbackService*> service_{nullptr};
};

}  // namespace kvc

#endif  // KVC_SERVICE_ROLE_GATE_H_
