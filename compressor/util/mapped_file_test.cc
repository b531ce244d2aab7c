#include "compressor/util/mapped_file.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "compressor/util/sha256.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

std::string TempPath(const std::string& name) {
  return std::string(::testing::TempDir()) + "/" + name;
}

TEST(MappedFileTest, MapsContents) {
  std::string path = TempPath("mapped_file_test.bin");
  { std::ofstream(path, std::ios::binary) << "hello"; }
  auto f = MappedFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*f)->data()), 5), "hello");
}

TEST(MappedFileTest, EmptyFile) {
  std::string path = TempPath("mapped_file_empty.bin");
  { std::ofstream(path, std::ios::binary); }
  auto f = MappedFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->size(), 0u);
}

TEST(MappedFileTest, MissingIsNotFound) {
  auto f = MappedFile::Open(TempPath("does-not-exist"));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

TEST(MappedFileTest, DirectoryIsInvalid) {
  auto f = MappedFile::Open(::testing::TempDir());
  EXPECT_FALSE(f.ok());
}

TEST(Sha256Test, KnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace kvc
