// The CacheStore contract, run against every backend, plus the tests that only one backend can answer
// (file restart and eviction, redis keys and TTL, URI parsing).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/store/cache_store.h"
#include "service/store/file_store.h"
#include "service/store/redis_server_for_test.h"
#include "service/store/redis_store.h"

namespace kvc {
namespace {

using ::testing::HasSubstr;

#define ASSERT_OK(expr)                                       \
  do {                                                        \
    const absl::Status assert_ok_status_ = (expr);            \
    ASSERT_TRUE(assert_ok_status_.ok()) << assert_ok_status_; \
  } while (0)

constexpr int64_t kRedisPartBytes = 256 << 10;  // small, so that moderate values are multi-part

// A 64-hex id: `prefix` followed by the zero-padded hex of n.
std::string Id(const std::string& prefix, uint64_t n) {
  std::string tail = absl::StrFormat("%016x", n);
  return prefix + std::string(64 - prefix.size() - tail.size(), '0') + tail;
}

// Bytes that differ at every position between seeds, so a value stitched from two writes never matches.
std::string Bytes(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  std::mt19937 rng(seed);
  for (size_t i = 0; i < size; i += 4) {
    uint32_t v = rng();
    for (size_t j = 0; j < 4 && i + j < size; ++j) out[i + j] = static_cast<char>(v >> (8 * j));
  }
  return out;
}

std::string MakeTempDir(const std::string& tag) {
  std::string templ = absl::StrCat(::testing::TempDir(), "/kvc_store_", tag, "_XXXXXX");
  char* made = ::mkdtemp(templ.data());
  EXPECT_NE(made, nullptr) << "mkdtemp " << templ;
  return templ;
}

// One server for the whole binary; a test that needs a pristine one flushes it.
store_testing::RedisServerForTest* SharedRedis() {
  static std::unique_ptr<store_testing::RedisServerForTest> server;
  static absl::Status failure;
  if (server == nullptr && failure.ok()) {
    auto started = store_testing::RedisServerForTest::Start(MakeTempDir("redis"));
    if (started.ok()) {
      server = std::move(*started);
    } else {
      failure = started.status();
    }
  }
  EXPECT_TRUE(failure.ok()) << failure;
  return server.get();
}

class CacheStoreContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto store = Open(StoreOptions());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  absl::StatusOr<std::unique_ptr<CacheStore>> Open(StoreOptions options) {
    const std::string& backend = GetParam();
    if (backend == "memory") return OpenCacheStore("memory://", options);
    if (backend == "file") {
      if (dir_.empty()) dir_ = MakeTempDir("file");
      return OpenCacheStore("file://" + dir_, options);
    }
    store_testing::RedisServerForTest* redis = SharedRedis();
    if (redis == nullptr) return absl::FailedPreconditionError("no redis-server");
    // db 3, so that the URI's database is honored by every connection in the pool.
    auto flushed = redis->Command({"FLUSHALL"});
    if (!flushed.ok()) return flushed.status();
    options.redis_part_bytes = kRedisPartBytes;
    return OpenCacheStore(redis->Uri(3), options);
  }

  std::unique_ptr<CacheStore> store_;
  std::string dir_;
};

TEST_P(CacheStoreContractTest, BackendName) { EXPECT_EQ(store_->backend(), GetParam()); }

TEST_P(CacheStoreContractTest, PutGetStatDelete) {
  const std::string id = Id("a1", 1);
  const std::string value = Bytes(1000, 1);
  absl::Time before = absl::Now();
  ASSERT_OK(store_->Put(id, value));
  absl::Time after = absl::Now();

  auto got = store_->Get(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, value);

  auto info = store_->Stat(id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->id, id);
  EXPECT_EQ(info->size_bytes, 1000);
  EXPECT_GE(info->created, before - absl::Milliseconds(1));
  EXPECT_LE(info->created, after + absl::Milliseconds(1));
  EXPECT_GE(info->last_access, info->created);

  ASSERT_OK(store_->Delete(id));
  EXPECT_EQ(store_->Get(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Stat(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete(id).code(), absl::StatusCode::kNotFound);
}

TEST_P(CacheStoreContractTest, MissingIsNotFoundAndNamesTheId) {
  const std::string id = Id("b2", 2);
  absl::Status get = store_->Get(id).status();
  EXPECT_EQ(get.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(get.message()), HasSubstr(id));
  EXPECT_EQ(store_->Stat(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete(id).code(), absl::StatusCode::kNotFound);
}

TEST_P(CacheStoreContractTest, GetValueEqualsGetAndOutlivesOverwriteAndDelete) {
  const std::string id = Id("c4", 4);
  const std::string first = Bytes(2 * kRedisPartBytes + 5, 5);
  ASSERT_OK(store_->Put(id, first));
  auto value = store_->GetValue(id);
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_TRUE((*value)->bytes() == first);
  ASSERT_OK(store_->Put(id, Bytes(7, 6)));
  ASSERT_OK(store_->Delete(id));
  EXPECT_TRUE((*value)->bytes() == first);  // the value read earlier is unaffected
  EXPECT_EQ(store_->GetValue(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetValue("../x").status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_OK(store_->Put(id, ""));
  auto empty = store_->GetValue(id);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE((*empty)->bytes().empty());
}

TEST_P(CacheStoreContractTest, OverwriteReplacesTheWholeValue) {
  const std::string id = Id("c3", 3);
  const std::string big = Bytes(3 * kRedisPartBytes + 17, 3);
  const std::string small = Bytes(10, 4);
  ASSERT_OK(store_->Put(id, big));
  ASSERT_OK(store_->Put(id, small));
  auto got = store_->Get(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, small);
  EXPECT_EQ(store_->Stat(id)->size_bytes, 10);

  ASSERT_OK(store_->Put(id, big));
  got = store_->Get(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == big);
  EXPECT_EQ(store_->Stat(id)->size_bytes, static_cast<int64_t>(big.size()));
}

TEST_P(CacheStoreContractTest, EmptyValue) {
  const std::string id = Id("d4", 4);
  ASSERT_OK(store_->Put(id, ""));
  auto got = store_->Get(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "");
  EXPECT_EQ(store_->Stat(id)->size_bytes, 0);
  auto page = store_->List("", 0, "");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->entries[0].size_bytes, 0);
}

TEST_P(CacheStoreContractTest, LargeValue) {
  const std::string id = Id("e5", 5);
  const std::string value = Bytes(20 << 20, 5);  // 80 parts on redis
  ASSERT_OK(store_->Put(id, value));
  auto got = store_->Get(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == value) << "20 MiB value differs after a round trip";
  EXPECT_EQ(store_->Stat(id)->size_bytes, int64_t{20} << 20);
}

TEST_P(CacheStoreContractTest, BadIdsAreInvalidArgument) {
  const std::string hex63 = Id("", 7).substr(1);
  const std::vector<std::string> bad = {
      "",
      "abc",
      hex63,
      hex63 + "00",
      std::string(64, 'A'),
      std::string(63, 'a') + "g",
      "../../etc/passwd",
      "ab/" + hex63.substr(2),
      "../" + hex63.substr(2),
      std::string(32, 'a') + std::string("\0", 1) + std::string(31, 'a'),
  };
  for (const std::string& id : bad) {
    SCOPED_TRACE(absl::StrCat("id \"", absl::CEscape(id), "\""));
    absl::Status put = store_->Put(id, "x");
    EXPECT_EQ(put.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(put.message()), HasSubstr("cache_id"));
    EXPECT_EQ(store_->Get(id).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Stat(id).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Delete(id).code(), absl::StatusCode::kInvalidArgument);
  }
  auto page = store_->List("", 0, "");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_TRUE(page->entries.empty());
  if (!dir_.empty()) {
    // Nothing was created outside the store, and nothing but the lock inside it.
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/../../etc/passwd.kvc"));
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_)) {
      EXPECT_EQ(entry.path().filename(), ".lock") << entry.path();
    }
  }
}

TEST_P(CacheStoreContractTest, ListPagesInIdOrderAndFiltersByPrefix) {
  std::set<std::string> all;
  for (int i = 0; i < 10; ++i) all.insert(Id("ab", 100 + i));
  for (int i = 0; i < 15; ++i) all.insert(Id(absl::StrFormat("%02x", (i * 37) % 256), 200 + i));
  for (const std::string& id : all) ASSERT_OK(store_->Put(id, std::string(id.size(), 'v')));

  // Everything, 10 at a time.
  std::vector<std::string> listed;
  std::string token;
  int pages = 0;
  do {
    auto page = store_->List("", 10, token);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_LE(page->entries.size(), 10u);
    for (const CacheEntryInfo& e : page->entries) {
      listed.push_back(e.id);
      EXPECT_EQ(e.size_bytes, 64);
    }
    token = page->next_page_token;
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(listed, std::vector<std::string>(all.begin(), all.end()));

  // Only the "ab" ids, 4 at a time.
  std::vector<std::string> ab;
  token.clear();
  pages = 0;
  do {
    auto page = store_->List("ab", 4, token);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const CacheEntryInfo& e : page->entries) ab.push_back(e.id);
    token = page->next_page_token;
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(ab.size(), 10u);
  EXPECT_TRUE(std::is_sorted(ab.begin(), ab.end()));
  for (const std::string& id : ab) EXPECT_TRUE(absl::StartsWith(id, "ab")) << id;

  // A full id as the prefix, a prefix nothing has, and the default page size.
  const std::string one = *all.begin();
  auto exact = store_->List(one, 5, "");
  ASSERT_TRUE(exact.ok()) << exact.status();
  ASSERT_EQ(exact->entries.size(), 1u);
  EXPECT_EQ(exact->entries[0].id, one);
  auto none = store_->List("fffff", 5, "");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->entries.empty());
  EXPECT_TRUE(none->next_page_token.empty());
  auto whole = store_->List("", 0, "");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->entries.size(), all.size());
  EXPECT_TRUE(whole->next_page_token.empty());
}

TEST_P(CacheStoreContractTest, ListRejectsBadArguments) {
  EXPECT_EQ(store_->List("AB", 10, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->List("x", 10, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->List("../", 10, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->List(std::string(65, 'a'), 10, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->List("", -1, "").status().code(), absl::StatusCode::kInvalidArgument);
  absl::Status token = store_->List("", 10, "not-a-token").status();
  EXPECT_EQ(token.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(token.message()), HasSubstr("page_token"));
}

TEST_P(CacheStoreContractTest, StatIsNotAnAccessButGetIs) {
  const std::string id = Id("f6", 6);
  ASSERT_OK(store_->Put(id, "abc"));
  auto first = store_->Stat(id);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = store_->Stat(id);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->last_access, first->last_access);
  // Redis records accesses at one-second granularity.
  absl::SleepFor(GetParam() == "redis" ? absl::Milliseconds(1100) : absl::Milliseconds(2));
  ASSERT_TRUE(store_->Get(id).ok());
  auto third = store_->Stat(id);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_GT(third->last_access, first->last_access);
  EXPECT_EQ(third->created, first->created);
}

// 8 threads put, get and delete 3 overlapping ids. Every Get must return one complete value that some
// Put wrote (or NOT_FOUND), never a mix of two.
TEST_P(CacheStoreContractTest, ConcurrentPutGetNeverMixesValues) {
  constexpr int kThreads = 8;
  constexpr int kIds = 3;
  constexpr int kVariants = 4;
  constexpr int kOpsPerThread = 30;
  std::vector<std::string> ids;
  std::vector<std::vector<std::string>> values(kIds);
  for (int i = 0; i < kIds; ++i) {
    ids.push_back(Id("77", i));
    for (int v = 0; v < kVariants; ++v) {
      // Lengths differ too, and most span several redis parts.
      values[i].push_back(Bytes(kRedisPartBytes * (v + 1) + 1000 * v, 1000 * i + v));
    }
  }
  std::atomic<int> gets_found{0};
  std::atomic<int> failures{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int op = 0; op < kOpsPerThread; ++op) {
        int i = rng() % kIds;
        int kind = rng() % 10;
        if (kind < 4) {
          absl::Status s = store_->Put(ids[i], values[i][rng() % kVariants]);
          if (!s.ok()) {
            ++failures;
            errors[t] = s.ToString();
          }
        } else if (kind < 9) {
          auto got = store_->Get(ids[i]);
          if (got.ok()) {
            ++gets_found;
            if (std::find(values[i].begin(), values[i].end(), *got) == values[i].end()) {
              ++failures;
              errors[t] = absl::StrCat("Get returned ", got->size(), " bytes that no Put wrote");
            }
          } else if (got.status().code() != absl::StatusCode::kNotFound) {
            ++failures;
            errors[t] = got.status().ToString();
          }
        } else {
          absl::Status s = store_->Delete(ids[i]);
          if (!s.ok() && s.code() != absl::StatusCode::kNotFound) {
            ++failures;
            errors[t] = s.ToString();
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(gets_found.load(), 0);
  // The survivors are still whole.
  for (int i = 0; i < kIds; ++i) {
    auto got = store_->Get(ids[i]);
    if (got.ok()) {
      EXPECT_NE(std::find(values[i].begin(), values[i].end(), *got), values[i].end());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, CacheStoreContractTest, ::testing::Values("memory", "file", "redis"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// ---- OpenCacheStore and ids ------------------------------------------------------------------------

TEST(ValidateCacheIdTest, AcceptsLowercaseHexOnly) {
  EXPECT_TRUE(ValidateCacheId(std::string(64, 'a')).ok());
  EXPECT_TRUE(ValidateCacheId(Id("0123456789abcdef", 9)).ok());
  absl::Status s = ValidateCacheId("../x");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cache_id"));
  // A hostile id is quoted escaped and cut short.
  absl::Status long_id = ValidateCacheId(std::string(10000, '\n'));
  EXPECT_LT(long_id.message().size(), 600u);
}

TEST(OpenCacheStoreTest, RejectsUnknownAndMalformedUris) {
  StoreOptions options;
  for (const char* uri :
       {"ftp://host/x", "", "memory://x", "file://", "redis://", "redis://h:0", "redis://h:99999",
        "redis://h:port", "redis://h/db", "redis://user@h", "redis://h?x=1"}) {
    auto store = OpenCacheStore(uri, options);
    EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument) << uri << ": " << store.status();
  }
  absl::Status ftp = OpenCacheStore("ftp://host/x", options).status();
  EXPECT_THAT(std::string(ftp.message()), HasSubstr("\"ftp\""));
}

TEST(OpenCacheStoreTest, DisplayedUrisHideTheRedisPassword) {
  EXPECT_EQ(StoreUriForDisplay("redis://:s3cret@kvc-redis:6379/0"), "redis://:***@kvc-redis:6379/0");
  EXPECT_EQ(StoreUriForDisplay("redis://kvc:p%40ss@[::1]:7001/"), "redis://kvc:***@[::1]:7001/");
  for (const char* unchanged : {"redis://cache.internal:6379/0", "redis://kvc@h:1/0", "file:///var/lib/kvc"}) {
    EXPECT_EQ(StoreUriForDisplay(unchanged), unchanged);
  }
}

TEST(OpenCacheStoreTest, ParsesRedisUris) {
  auto plain = ParseRedisUri("redis://cache.internal");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->host, "cache.internal");
  EXPECT_EQ(plain->port, 6379);
  EXPECT_EQ(plain->db, 0);
  EXPECT_EQ(plain->password, "");

  auto full = ParseRedisUri("redis://:p%40ss%3Aw@10.0.0.5:7000/2");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->host, "10.0.0.5");
  EXPECT_EQ(full->port, 7000);
  EXPECT_EQ(full->db, 2);
  EXPECT_EQ(full->user, "");
  EXPECT_EQ(full->password, "p@ss:w");

  auto v6 = ParseRedisUri("redis://kvc:secret@[::1]:7001/");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 7001);
  EXPECT_EQ(v6->db, 0);
  EXPECT_EQ(v6->user, "kvc");
  EXPECT_EQ(v6->password, "secret");

  EXPECT_FALSE(ParseRedisUri("redis://:%zz@h").ok());
}

TEST(OpenCacheStoreTest, UnreachableRedisIsUnavailableAndNamesTheAddress) {
  // A port the kernel just handed out and took back: nothing listens there.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  const int port = ntohs(addr.sin_port);
  StoreOptions options;
  options.connect_timeout = absl::Milliseconds(500);
  absl::Status s = OpenCacheStore(absl::StrCat("redis://127.0.0.1:", port), options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("redis 127.0.0.1:", port, ": cannot connect")));
}

TEST(OpenCacheStoreTest, FileUriForms) {
  const std::string dir = MakeTempDir("uris");
  StoreOptions options;
  const std::string id = Id("0f", 1);
  {
    auto store = OpenCacheStore("file://" + dir + "/abs", options);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->backend(), "file");
    ASSERT_OK((*store)->Put(id, "abs"));
  }
  {
    auto store = OpenCacheStore(dir + "/abs", options);  // plain path: the same store
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ(*(*store)->Get(id), "abs");
  }
  {
    const std::string cwd = std::filesystem::current_path();
    ASSERT_EQ(::chdir(dir.c_str()), 0);
    auto store = OpenCacheStore("file://./rel", options);
    ASSERT_EQ(::chdir(cwd.c_str()), 0);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_OK((*store)->Put(id, "rel"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/rel/0f/00/" + id + ".kvc"));
  }
  std::filesystem::remove_all(dir);
}

// ---- file:// ---------------------------------------------------------------------------------------

class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir("filestore"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<FileStore> OpenFile(int64_t capacity) {
    StoreOptions options;
    options.capacity_bytes = capacity;
    auto store = FileStore::Open(dir_, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::string dir_;
};

TEST_F(FileStoreTest, OneFileWithTheExactBytesInAShardedDirectory) {
  auto store = OpenFile(0);
  ASSERT_NE(store, nullptr);
  const std::string id = Id("abcd", 1);
  ASSERT_OK(store->Put(id, "hello"));
  std::ifstream in(dir_ + "/ab/cd/" + id + ".kvc", std::ios::binary);
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(contents, "hello");
}

TEST_F(FileStoreTest, RestartKeepsValuesTimesAndLruOrder) {
  const std::string a = Id("aa", 1), b = Id("bb", 2), c = Id("cc", 3), d = Id("dd", 4);
  std::map<std::string, CacheEntryInfo> before;
  {
    auto store = OpenFile(3500);
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->Put(a, Bytes(1000, 1)));
    ASSERT_OK(store->Put(b, Bytes(1000, 2)));
    ASSERT_OK(store->Put(c, Bytes(1000, 3)));
    ASSERT_TRUE(store->Get(a).ok());  // LRU order now b, c, a
    for (const std::string& id : {a, b, c}) before[id] = *store->Stat(id);
  }
  auto store = OpenFile(3500);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->used_bytes(), 3000);
  for (const std::string& id : {a, b, c}) {
    auto info = store->Stat(id);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->size_bytes, 1000);
    // Access times are persisted exactly (nanosecond mtimes); birth times may come from the temp file.
    EXPECT_EQ(info->last_access, before[id].last_access) << id;
    EXPECT_LE(absl::AbsDuration(info->created - before[id].created), absl::Seconds(1)) << id;
  }
  EXPECT_LT(store->Stat(b)->last_access, store->Stat(c)->last_access);
  EXPECT_LT(store->Stat(c)->last_access, store->Stat(a)->last_access);

  // The least recently used before the restart is the first to go after it.
  ASSERT_OK(store->Put(d, Bytes(1000, 4)));
  EXPECT_EQ(store->Get(b).status().code(), absl::StatusCode::kNotFound);
  for (const auto& [id, seed] : std::vector<std::pair<std::string, int>>{{a, 1}, {c, 3}, {d, 4}}) {
    auto got = store->Get(id);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(*got == Bytes(1000, seed)) << id;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/bb/00/" + b + ".kvc"));
}

TEST_F(FileStoreTest, EvictsLeastRecentlyUsedFirst) {
  auto store = OpenFile(3000);
  ASSERT_NE(store, nullptr);
  const std::string a = Id("01", 1), b = Id("02", 2), c = Id("03", 3), d = Id("04", 4), e = Id("05", 5);
  ASSERT_OK(store->Put(a, std::string(1000, 'a')));
  ASSERT_OK(store->Put(b, std::string(1000, 'b')));
  ASSERT_OK(store->Put(c, std::string(1000, 'c')));
  ASSERT_TRUE(store->Get(a).ok());                   // order: b c a
  ASSERT_OK(store->Put(d, std::string(1000, 'd')));  // evicts b
  EXPECT_EQ(store->Stat(b).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store->Get(c).ok());                   // order: a d c
  ASSERT_OK(store->Put(e, std::string(1000, 'e')));  // evicts a
  EXPECT_EQ(store->Stat(a).status().code(), absl::StatusCode::kNotFound);
  for (const std::string& id : {c, d, e}) EXPECT_TRUE(store->Stat(id).ok()) << id;
  EXPECT_EQ(store->used_bytes(), 3000);

  // An overwrite counts its new size once; growing an entry evicts others, never itself.
  ASSERT_OK(store->Put(e, std::string(2500, 'E')));
  EXPECT_EQ(store->used_bytes(), 2500);
  EXPECT_EQ(*store->Get(e), std::string(2500, 'E'));
}

TEST_F(FileStoreTest, TellsEachEvictionWithItsSize) {
  std::vector<int64_t> evicted;
  StoreOptions options;
  options.capacity_bytes = 2000;
  options.on_evict = [&](int64_t bytes) { evicted.push_back(bytes); };
  auto store = FileStore::Open(dir_, options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_OK((*store)->Put(Id("0a", 1), std::string(700, 'a')));
  ASSERT_OK((*store)->Put(Id("0b", 2), std::string(900, 'b')));
  EXPECT_TRUE(evicted.empty());
  ASSERT_OK((*store)->Put(Id("0c", 3), std::string(1500, 'c')));  // both older entries must go
  EXPECT_EQ(evicted, (std::vector<int64_t>{700, 900}));
}

TEST_F(FileStoreTest, ValueLargerThanCapacityIsResourceExhausted) {
  auto store = OpenFile(1000);
  ASSERT_NE(store, nullptr);
  const std::string a = Id("0a", 1);
  ASSERT_OK(store->Put(a, std::string(600, 'a')));
  absl::Status s = store->Put(Id("0b", 2), std::string(1001, 'b'));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("capacity"));
  EXPECT_EQ(*store->Get(a), std::string(600, 'a'));
  ASSERT_OK(store->Put(Id("0c", 3), std::string(1000, 'c')));  // exactly the capacity fits
  EXPECT_EQ(store->used_bytes(), 1000);
}

TEST_F(FileStoreTest, OpenDeletesStaleTempFilesAndIgnoresStrangers) {
  const std::string id = Id("abcd", 7);
  {
    auto store = OpenFile(0);
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->Put(id, "kept"));
  }
  const std::string temp = dir_ + "/ab/cd/." + id + ".999.1.tmp";
  std::ofstream(temp) << "half a value";
  std::ofstream(dir_ + "/README") << "not a cache entry";
  std::filesystem::create_directories(dir_ + "/zz");
  std::ofstream(dir_ + "/ab/cd/" + Id("ffff", 1) + ".kvc") << "wrong shard";

  auto store = OpenFile(0);
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(std::filesystem::exists(temp));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/README"));
  auto page = store->List("", 0, "");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->entries[0].id, id);
  EXPECT_EQ(*store->Get(id), "kept");
}

TEST_F(FileStoreTest, ShrunkCapacityEvictsOnOpen) {
  {
    auto store = OpenFile(0);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 5; ++i) ASSERT_OK(store->Put(Id("11", i), std::string(100, 'x')));
  }
  auto store = OpenFile(250);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->used_bytes(), 200);
  EXPECT_TRUE(store->Stat(Id("11", 3)).ok());
  EXPECT_TRUE(store->Stat(Id("11", 4)).ok());
}

TEST_F(FileStoreTest, OneStorePerDirectory) {
  auto first = OpenFile(0);
  ASSERT_NE(first, nullptr);
  auto second = FileStore::Open(dir_, StoreOptions());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  first.reset();
  EXPECT_TRUE(FileStore::Open(dir_, StoreOptions()).ok());
}

TEST_F(FileStoreTest, FileRemovedBehindTheStoreIsNotFound) {
  auto store = OpenFile(0);
  ASSERT_NE(store, nullptr);
  const std::string id = Id("ee", 1);
  ASSERT_OK(store->Put(id, "x"));
  std::filesystem::remove(dir_ + "/ee/00/" + id + ".kvc");
  EXPECT_EQ(store->Get(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Stat(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->used_bytes(), 0);
}

// ---- redis:// --------------------------------------------------------------------------------------

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = SharedRedis();
    ASSERT_NE(redis_, nullptr);
    ASSERT_TRUE(redis_->Command({"FLUSHALL"}).ok());
  }

  std::unique_ptr<CacheStore> OpenRedis(StoreOptions options) {
    options.redis_part_bytes = kRedisPartBytes;
    auto store = OpenCacheStore(redis_->Uri(), options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::vector<std::string> Keys() {
    auto keys = redis_->Command({"KEYS", "*"});
    EXPECT_TRUE(keys.ok()) << keys.status();
    std::vector<std::string> out = keys.ok() ? *keys : std::vector<std::string>();
    std::sort(out.begin(), out.end());
    return out;
  }

  store_testing::RedisServerForTest* redis_ = nullptr;
};

TEST_F(RedisStoreTest, PartsAndManifestUnderOneHashTag) {
  auto store = OpenRedis(StoreOptions());
  ASSERT_NE(store, nullptr);
  const std::string id = Id("12", 1);
  ASSERT_OK(store->Put(id, Bytes(3 * kRedisPartBytes, 1)));
  std::vector<std::string> keys = Keys();
  ASSERT_EQ(keys.size(), 4u);
  const std::string manifest = "kvc:m:{" + id + "}";
  EXPECT_EQ(keys.front(), manifest);  // "kvc:m:" sorts before "kvc:p:"
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(absl::StartsWith(keys[i + 1], "kvc:p:{" + id + "}:")) << keys[i + 1];
    EXPECT_TRUE(absl::EndsWith(keys[i + 1], absl::StrCat(":", i))) << keys[i + 1];
  }
}

TEST_F(RedisStoreTest, OverwriteAndDeleteLeaveNoStaleParts) {
  auto store = OpenRedis(StoreOptions());
  ASSERT_NE(store, nullptr);
  const std::string id = Id("13", 1);
  ASSERT_OK(store->Put(id, Bytes(20 * kRedisPartBytes, 1)));
  EXPECT_EQ(Keys().size(), 21u);
  ASSERT_OK(store->Put(id, Bytes(kRedisPartBytes + 1, 2)));
  EXPECT_EQ(Keys().size(), 3u);
  ASSERT_OK(store->Put(id, ""));
  EXPECT_EQ(Keys().size(), 1u);
  ASSERT_OK(store->Delete(id));
  EXPECT_TRUE(Keys().empty());
}

TEST_F(RedisStoreTest, TtlExpiresEveryKeyOfAnEntry) {
  StoreOptions options;
  options.ttl = absl::Seconds(1);
  auto store = OpenRedis(options);
  ASSERT_NE(store, nullptr);
  const std::string id = Id("14", 1);
  const std::string value = Bytes(4 * kRedisPartBytes, 1);
  ASSERT_OK(store->Put(id, value));
  EXPECT_EQ(*store->Get(id), value);
  for (const std::string& key : Keys()) {
    auto pttl = redis_->Command({"PTTL", key});
    ASSERT_TRUE(pttl.ok()) << pttl.status();
    int64_t ms = std::stoll((*pttl)[0]);
    EXPECT_GT(ms, 0) << key;
    EXPECT_LE(ms, 1000) << key;
  }
  absl::SleepFor(absl::Milliseconds(2100));
  EXPECT_EQ(store->Get(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Stat(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Keys().empty());
}

TEST_F(RedisStoreTest, EntryWithALostPartIsNotFoundAndCleanedUp) {
  auto store = OpenRedis(StoreOptions());
  ASSERT_NE(store, nullptr);
  const std::string id = Id("15", 1);
  ASSERT_OK(store->Put(id, Bytes(3 * kRedisPartBytes, 1)));
  std::vector<std::string> keys = Keys();
  ASSERT_TRUE(redis_->Command({"DEL", keys[1]}).ok());  // as maxmemory eviction might
  absl::Status s = store->Get(id).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(store->Stat(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Keys().empty());
}

TEST_F(RedisStoreTest, PasswordAndDatabaseFromTheUri) {
  const std::string dir = MakeTempDir("redis_auth");
  auto server = store_testing::RedisServerForTest::Start(dir, {"--requirepass", "s3cret"});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  StoreOptions options;
  auto store = OpenCacheStore(absl::StrCat("redis://:s3cret@127.0.0.1:", port, "/5"), options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_OK((*store)->Put(Id("16", 1), "in db 5"));
  EXPECT_EQ(*(*store)->Get(Id("16", 1)), "in db 5");

  absl::Status wrong = OpenCacheStore(absl::StrCat("redis://:nope@127.0.0.1:", port), options).status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kFailedPrecondition) << wrong;
  absl::Status none = OpenCacheStore(absl::StrCat("redis://127.0.0.1:", port), options).status();
  EXPECT_EQ(none.code(), absl::StatusCode::kFailedPrecondition) << none;
  EXPECT_THAT(std::string(none.message()), HasSubstr("NOAUTH"));
  server->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvc
