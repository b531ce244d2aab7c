#include "client/cpp/cache_transfer.h"

#include <gtest/gtest.h>

#include "compressor/util/sha256.h"

namespace kvc {
namespace {

const std::string kId(64, 'a');

kvc::v1::CacheChunk Data(absl::string_view bytes) {
  kvc::v1::CacheChunk c;
  c.set_data(std::string(bytes));
  return c;
}

TEST(CacheTransferTest, PutHeaderCarriesLengthAndDigest) {
  const std::string value = "some .kvc bytes";
  const kvc::v1::CacheChunk header = MakePutHeader(kId, value);
  ASSERT_TRUE(header.has_header());
  EXPECT_EQ(header.header().cache_id(), kId);
  EXPECT_EQ(header.header().total_bytes(), static_cast<int64_t>(value.size()));
  ASSERT_EQ(header.header().sha256().size(), 32u);
  Sha256 h;
  h.Update(value);
  const auto digest = h.Final();
  EXPECT_EQ(header.header().sha256(), std::string(reinterpret_cast<const char*>(digest.data()), 32));
}

TEST(CacheTransferTest, SplitCoversTheValueInBoundedPieces) {
  const std::string value(10 * 1000 + 7, 'x');
  const std::vector<absl::string_view> pieces = SplitIntoChunks(value, 1000);
  ASSERT_EQ(pieces.size(), 11u);
  std::string joined;
  for (absl::string_view p : pieces) {
    EXPECT_GE(p.size(), 1u);
    EXPECT_LE(p.size(), 1000u);
    joined.append(p.data(), p.size());
  }
  EXPECT_EQ(joined, value);
  // Out-of-range sizes are clamped to the wire's 1 MiB.
  const std::string big((3 << 20) + 1, 'y');
  EXPECT_EQ(SplitIntoChunks(big, 1 << 30).size(), 4u);
  EXPECT_TRUE(SplitIntoChunks("", 10).empty());
}

TEST(CacheTransferTest, AssemblesAndVerifies) {
  const std::string value = "0123456789abcdef";
  kvc::v1::CacheChunk header = MakePutHeader(kId, value);
  CacheAssembler assembler(kId);
  ASSERT_TRUE(assembler.Add(header).ok());
  EXPECT_TRUE(assembler.has_header());
  for (absl::string_view piece : SplitIntoChunks(value, 5)) {
    kvc::v1::CacheChunk c = Data(piece);
    ASSERT_TRUE(assembler.Add(c).ok());
  }
  absl::StatusOr<FetchedCache> fetched = std::move(assembler).Finish();
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(fetched->bytes, value);
  EXPECT_EQ(fetched->header.total_bytes(), 16);
}

TEST(CacheTransferTest, DigestMismatchIsDataLoss) {
  const std::string value = "0123456789abcdef";
  kvc::v1::CacheChunk header = MakePutHeader(kId, value);
  CacheAssembler assembler(kId);
  ASSERT_TRUE(assembler.Add(header).ok());
  kvc::v1::CacheChunk c = Data("0123456789abcdeF");  // one byte differs
  ASSERT_TRUE(assembler.Add(c).ok());
  absl::StatusOr<FetchedCache> fetched = std::move(assembler).Finish();
  EXPECT_EQ(fetched.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(fetched.status().message().find("SHA-256"), absl::string_view::npos);
}

TEST(CacheTransferTest, LengthMismatchesAreDataLoss) {
  const std::string value = "0123456789";
  {
    CacheAssembler assembler(kId);
    kvc::v1::CacheChunk header = MakePutHeader(kId, value);
    ASSERT_TRUE(assembler.Add(header).ok());
    kvc::v1::CacheChunk c = Data("01234");
    ASSERT_TRUE(assembler.Add(c).ok());
    EXPECT_EQ(std::move(assembler).Finish().status().code(), absl::StatusCode::kDataLoss);  // short
  }
  {
    CacheAssembler assembler(kId);
    kvc::v1::CacheChunk header = MakePutHeader(kId, value);
    ASSERT_TRUE(assembler.Add(header).ok());
    kvc::v1::CacheChunk c = Data(value + "!");
    EXPECT_EQ(assembler.Add(c).code(), absl::StatusCode::kDataLoss);  // past total_bytes
  }
}

TEST(CacheTransferTest, ProtocolViolationsAreInternal) {
  const std::string value = "0123456789";
  {
    CacheAssembler assembler(kId);
    kvc::v1::CacheChunk c = Data(value);
    EXPECT_EQ(assembler.Add(c).code(), absl::StatusCode::kInternal);  // data before header
  }
  {
    CacheAssembler assembler(kId);
    kvc::v1::CacheChunk header = MakePutHeader(kId, value);
    ASSERT_TRUE(assembler.Add(header).ok());
    kvc::v1::CacheChunk again = MakePutHeader(kId, value);
    EXPECT_EQ(assembler.Add(again).code(), absl::StatusCode::kInternal);  // second header
  }
  {
    CacheAssembler assembler(kId);
    kvc::v1::CacheChunk other = MakePutHeader(std::string(64, 'b'), value);
    EXPECT_EQ(assembler.Add(other).code(), absl::StatusCode::kInternal);  // another id
  }
  {
    CacheAssembler assembler(kId);
    kvc::v1::CacheChunk empty;
    EXPECT_EQ(assembler.Add(empty).code(), absl::StatusCode::kInternal);
  }
  {
    CacheAssembler assembler(kId);
    EXPECT_EQ(std::move(assembler).Finish().status().code(), absl::StatusCode::kInternal);  // no header
  }
}

}  // namespace
}  // namespace kvc
