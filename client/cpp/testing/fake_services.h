// Small stand-ins for the compress and generate roles, for tests of the client and the CLI that must not
// load a model. They answer from scripts: a queue of failures to return first, a fixed answer, and
// counters and the last request's metadata for the tests to check.
//
// Thread safety: every method may be called from any number of gRPC threads; the setters and getters lock
// the same mutex.
#ifndef KVC_CLIENT_CPP_TESTING_FAKE_SERVICES_H_
#define KVC_CLIENT_CPP_TESTING_FAKE_SERVICES_H_

#include <deque>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "proto/kvc/v1/compressor.grpc.pb.h"
#include "proto/kvc/v1/generator.grpc.pb.h"

namespace kvc::testing {

// Compress: the cache id is the SHA-256 of the documents' text and the query; tokens_in is the text
// length, tokens_out a quarter of it. Precompute: one cache per document, a hit when the same document
// (id and content) was precomputed before by this fake.
class FakeCompressor final : public kvc::v1::Compressor::CallbackService {
 public:
  grpc::ServerUnaryReactor* Compress(grpc::CallbackServerContext* ctx, const kvc::v1::CompressRequest* request,
                                     kvc::v1::CompressResponse* response) override;
  grpc::ServerUnaryReactor* Precompute(grpc::CallbackServerContext* ctx, const kvc::v1::PrecomputeRequest* request,
                                       kvc::v1::PrecomputeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const kvc::v1::GetModelInfoRequest* request,
                                         kvc::v1::ModelInfo* response) override;

  // The next calls (any RPC of this service) fail with these statuses, in order.
  void FailNext(std::vector<grpc::Status> failures);
  // Calls never answer; they end only when the client cancels or its deadline passes.
  void SetHang(bool hang);

  int calls() const;
  int precomputed_documents() const;  // documents that reached Precompute and were not hits
  std::string last_authorization() const;
  kvc::v1::CompressRequest last_compress_request() const;

 private:
  // Counts the call, records metadata; returns a reactor already finished with a scripted failure, or
  // null when the call should proceed.
  grpc::ServerUnaryReactor* Begin(grpc::CallbackServerContext* ctx);

  mutable absl::Mutex mu_;
  std::deque<grpc::Status> failures_ ABSL_GUARDED_BY(mu_);
  bool hang_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  int precomputed_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::string> stored_ ABSL_GUARDED_BY(mu_);
  std::string last_authorization_ ABSL_GUARDED_BY(mu_);
  kvc::v1::CompressRequest last_compress_ ABSL_GUARDED_BY(mu_);
};

// Generate streams the configured deltas, then a usage with finish reason EOS: once, or once per question
// of request.questions, each tagged with its question.
class FakeGenerator final : public kvc::v1::Generator::CallbackService {
 public:
  FakeGenerator();

  grpc::ServerWriteReactor<kvc::v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                               const kvc::v1::GenerateRequest* request) override;

  void SetDeltas(std::vector<std::string> texts);
  // The next calls fail with these statuses before sending anything.
  void FailNext(std::vector<grpc::Status> failures);
  // The next call sends its first delta and then fails with `status`.
  void FailAfterFirstDelta(grpc::Status status);

  int calls() const;
  kvc::v1::GenerateRequest last_request() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> deltas_ ABSL_GUARDED_BY(mu_);
  std::deque<grpc::Status> failures_ ABSL_GUARDED_BY(mu_);
  bool fail_after_first_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status after_first_status_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  kvc::v1::GenerateRequest last_request_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvc::testing

#endif  // KVC_CLIENT_CPP_TESTING_FAKE_SERVICES_H_
