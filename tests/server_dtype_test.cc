// End to end: the compute dtype is part of the cache id. A float32 server and a bfloat16 server work on one
// file store (one after the other: a file store is held by one process at a time); the same Compress gets
// a different id on each, neither answers with the other's cache, and each Generate decodes from a cache
// the other dtype made, converting its K/V (docs/api.md, "How cache ids are computed"). The same holds for
// the weight format.
#include <filesystem>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/kvc_test_client.h"
#include "tests/support/server_process.h"
#include "tests/support/testdata.h"

namespace kvc::testing {
namespace {

v1::CompressRequest SameCompress() {
  v1::CompressRequest r;
  r.add_documents()->set_text("The capital of France is Paris. " + FillerText(80, 42));
  r.set_query("What is the capital of France?");
  r.mutable_spec()->set_method("finch");
  r.mutable_spec()->set_ratio(2);
  (*r.mutable_spec()->mutable_options())["chunk_tokens"] = "32";
  return r;
}

v1::GenerateRequest GenerateFrom(const std::string& cache_id) {
  v1::GenerateRequest r;
  r.add_cache_ids(cache_id);
  r.set_query("What is the capital of France?");
  r.mutable_sampling()->set_max_tokens(6);
  r.mutable_sampling()->set_stop_on_eos(false);
  return r;
}

class ServerDtypeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = MakeTempDir("kvc-e2e-dtype-store-");
    ASSERT_FALSE(store_.empty());
  }
  void TearDown() override {
    if (HasFailure() && server_ != nullptr) ADD_FAILURE() << "kvc-server log:\n" << server_->Log();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(store_, ec);
  }

  // Stops the previous server (releasing the store), then starts one computing in `dtype` with `weights` on
  // the store.
  KvcStubs* Serve(const std::string& dtype, const std::string& weights = "float") {
    if (server_ != nullptr) {
      absl::StatusOr<int> code = server_->Stop();
      EXPECT_TRUE(code.ok() && *code == 0) << server_->Log();
    }
    auto server = ServerProcess::Start(
        {.args = {"--model", TestData("tiny_chat"), "--dtype", dtype, "--weights", weights, "--store",
                  "file://" + store_}});
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    server_ = *std::move(server);
    stubs_ = std::make_unique<KvcStubs>(server_->NewChannel());
    return stubs_.get();
  }

  static v1::CompressResponse Compress(KvcStubs& s, const v1::CompressRequest& r) {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    v1::CompressResponse out;
    grpc::Status status = s.compressor->Compress(&ctx, r, &out);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }

  std::string store_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<KvcStubs> stubs_;
};

TEST_F(ServerDtypeTest, DtypesGetTheirOwnIdsAndReadEachOthersCaches) {
  KvcStubs* f32 = Serve("float32");
  ASSERT_NE(f32, nullptr);
  const v1::CompressResponse a = Compress(*f32, SameCompress());
  EXPECT_FALSE(a.cache_hit());
  EXPECT_TRUE(Compress(*f32, SameCompress()).cache_hit()) << "the same request on the same server is a hit";

  KvcStubs* bf16 = Serve("bfloat16");
  ASSERT_NE(bf16, nullptr);
  {
    grpc::ClientContext ctx;
    Configure(ctx, {});
    v1::ModelInfo info;
    ASSERT_TRUE(bf16->compressor->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).ok());
    EXPECT_EQ(info.dtype(), "bf16");
  }
  const v1::CompressResponse b = Compress(*bf16, SameCompress());
  EXPECT_FALSE(b.cache_hit()) << "the bfloat16 server answered with the float32 server's cache";
  EXPECT_NE(b.cache_id(), a.cache_id());
  EXPECT_TRUE(Compress(*bf16, SameCompress()).cache_hit());
  // Both caches are in the store, and the bfloat16 server decodes from the float32 one by converting it.
  GenerateResult from_f32 = Generate(*bf16->generator, GenerateFrom(a.cache_id()));
  EXPECT_TRUE(from_f32.status.ok()) << from_f32.status.error_message();
  EXPECT_EQ(from_f32.token_count, 6);
  GenerateResult from_bf16 = Generate(*bf16->generator, GenerateFrom(b.cache_id()));
  EXPECT_TRUE(from_bf16.status.ok()) << from_bf16.status.error_message();

  // Back on float32: its own cache is still a hit, and the bfloat16 cache decodes too.
  f32 = Serve("float32");
  ASSERT_NE(f32, nullptr);
  const v1::CompressResponse again = Compress(*f32, SameCompress());
  EXPECT_TRUE(again.cache_hit());
  EXPECT_EQ(again.cache_id(), a.cache_id());
  GenerateResult from_other = Generate(*f32->generator, GenerateFrom(b.cache_id()));
  EXPECT_TRUE(from_other.status.ok()) << from_other.status.error_message();
  EXPECT_EQ(from_other.token_count, 6);
}

// The weight format is part of the id too: an int8 server (int8 weight rows and activations) misses the
// float server's cache, makes its own, and decodes from either.
TEST_F(ServerDtypeTest, Int8WeightsGetTheirOwnIds) {
  KvcStubs* f32 = Serve("float32");
  ASSERT_NE(f32, nullptr);
  const v1::CompressResponse a = Compress(*f32, SameCompress());
  KvcStubs* int8 = Serve("float32", "int8");
  ASSERT_NE(int8, nullptr);
  const v1::CompressResponse b = Compress(*int8, SameCompress());
  EXPECT_FALSE(b.cache_hit()) << "the int8 server answered with the float server's cache";
  EXPECT_NE(b.cache_id(), a.cache_id());
  EXPECT_TRUE(Compress(*int8, SameCompress()).cache_hit());
  for (const std::string& id : {a.cache_id(), b.cache_id()}) {
    GenerateResult out = Generate(*int8->generator, GenerateFrom(id));
    EXPECT_TRUE(out.status.ok()) << out.status.error_message();
    EXPECT_EQ(out.token_count, 6);
  }
}

}  // namespace
}  // namespace kvc::testing
