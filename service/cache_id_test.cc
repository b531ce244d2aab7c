// Cache ids against an independent implementation of docs/api.md's layout (Python hashlib + struct; the
// expected digests below were computed with it), plus what must and must not change an id.
#include "service/cache_id.h"

#include "gtest/gtest.h"

namespace kvc {
namespace {

const std::string kFingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

CacheIdInput Finch() {
  CacheIdInput in;
  in.fingerprint = kFingerprint;
  in.method = "finch";
  in.ratio = 8.0;
  in.options = {{"chunk_tokens", "512"}};
  in.protected_prefix = 3;
  in.context = {1, 2, 3, 40000, -5};
  in.query = {7, 8, 9};
  return in;
}

TEST(CacheIdTest, MatchesTheDocumentedLayout) {
  EXPECT_EQ(CanonicalSpecJson(Finch()),
            R"({"codec":"none","compute_dtype":"float32","dtype":"f32","method":"finch","options":{"chunk_tokens":"512"},)"
            R"("ratio":8.0})");
  EXPECT_EQ(*ComputeCacheId(Finch()), "cca1e401882d93a28ca2ddfbfd581012743cadd10536ed07fc6cbdb4cedcf7a9");

  CacheIdInput composed;
  composed.fingerprint = kFingerprint;
  composed.method = "none";
  composed.dtype = KvcDtype::kInt8;
  composed.codec = KvcCodec::kZstd;
  // Two referenced ids: "abab...ab" and "cdcd...cd".
  composed.document_cache_ids = {"", ""};
  for (int i = 0; i < 32; ++i) {
    composed.document_cache_ids[0] += "ab";
    composed.document_cache_ids[1] += "cd";
  }
  EXPECT_EQ(*ComputeCacheId(composed), "7335d8b32de5c3ab9738938b2a9e4fd857a1c0db4d2b27412f0b45cfc6db129d");
}

TEST(CacheIdTest, EverythingThatChangesTheBytesChangesTheId) {
  const std::string base = *ComputeCacheId(Finch());
  auto changed = [&](auto edit) {
    CacheIdInput in = Finch();
    edit(in);
    return *ComputeCacheId(in) != base;
  };
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.fingerprint[0] = '1'; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.ratio = 4.0; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.ratio.reset(); in.target_tokens = 8; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.options["chunk_tokens"] = "256"; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.dtype = KvcDtype::kBF16; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.codec = KvcCodec::kZstd; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.compute_dtype = "bfloat16"; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.weights = "q4"; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.weights = "int8"; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.protected_prefix = 2; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.context.back() = 6; }));
  EXPECT_TRUE(changed([](CacheIdInput& in) { in.query.push_back(1); }));
  // Moving a token from the context to the query is a different request.
  EXPECT_TRUE(changed([](CacheIdInput& in) {
    in.query.insert(in.query.begin(), in.context.back());
    in.context.pop_back();
  }));
  EXPECT_FALSE(changed([](CacheIdInput&) {}));
}

TEST(CacheIdTest, RefusesMalformedInput) {
  auto code = [](auto edit) {
    CacheIdInput in = Finch();
    edit(in);
    return ComputeCacheId(in).status().code();
  };
  EXPECT_EQ(code([](CacheIdInput& in) { in.fingerprint = "XYZ"; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](CacheIdInput& in) { in.target_tokens = 4; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](CacheIdInput& in) { in.compute_dtype.clear(); }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](CacheIdInput& in) { in.document_cache_ids = {std::string(64, 'a')}; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](CacheIdInput& in) { in.context.clear(); }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](CacheIdInput& in) { in.context.push_back(int64_t{1} << 40); }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](CacheIdInput& in) {
              in.context.clear();
              in.document_cache_ids = {"../etc"};
            }),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvc
