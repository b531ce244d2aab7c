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
            R"({"codec":"none","dtype":"f32","method":"finch","options":{"chunk_tokens":"512"},"ratio":8.0})");
  EXPECT_EQ(*ComputeCacheId(Finch()), "07e08b770f9a10231195bc1f1f34df1d19e53c2c72c490dfa6475935e666b613");

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
  EXPECT_EQ(*ComputeCacheId(composed), "e51c4eb88c731fc38e356a262d1b7b5b83a66a17c3185dc8aaacff474ae3658a");
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
