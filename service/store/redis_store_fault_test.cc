// The redis backend under server faults: killed in the middle of a Put, restarted while the store holds
// idle connections, and down. The server runs with an fsync-always append-only file so that what it held
// before a kill -9 is still there after the restart, which is what makes "no half-visible value"
// checkable.
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/store/cache_store.h"
#include "service/store/redis_server_for_test.h"

namespace kvc {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kPartBytes = 1 << 20;

std::string Id(int n) { return std::string(62, 'c') + std::to_string(10 + n); }

std::string Bytes(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  std::mt19937 rng(seed);
  for (size_t i = 0; i < size; i += 4) {
    uint32_t v = rng();
    for (size_t j = 0; j < 4 && i + j < size; ++j) out[i + j] = static_cast<char>(v >> (8 * j));
  }
  return out;
}

class RedisStoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = absl::StrCat(::testing::TempDir(), "/kvc_redis_fault_XXXXXX");
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    auto server =
        store_testing::RedisServerForTest::Start(dir_, {"--appendonly", "yes", "--appendfsync", "always"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    StoreOptions options;
    options.redis_part_bytes = kPartBytes;
    options.redis_pool_size = 4;
    options.connect_timeout = absl::Seconds(1);
    // Longer than the test holds the server stopped, so that the kill, not a timeout, ends the Put.
    options.io_timeout = absl::Seconds(30);
    auto store = OpenCacheStore(server_->Uri(), options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  void TearDown() override {
    store_.reset();
    server_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::vector<std::string> Keys() {
    auto keys = server_->Command({"KEYS", "*"});
    EXPECT_TRUE(keys.ok()) << keys.status();
    std::vector<std::string> out = keys.ok() ? *keys : std::vector<std::string>();
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string dir_;
  std::unique_ptr<store_testing::RedisServerForTest> server_;
  std::unique_ptr<CacheStore> store_;
};

TEST_F(RedisStoreFaultTest, KillDuringPutLeavesTheOldValueWholeAndTheStoreRecovers) {
  const std::string id = Id(1);
  const std::string old_value = Bytes(2 * kPartBytes + 5, 1);
  ASSERT_TRUE(store_->Put(id, old_value).ok());
  const std::vector<std::string> keys_before = Keys();
  ASSERT_EQ(keys_before.size(), 4u);  // manifest + 3 parts

  // A stopped server accepts no more bytes once the socket buffers fill (a few MiB), so a 64 MiB Put is
  // certainly still in flight, blocked mid-transaction, when the server dies.
  ASSERT_TRUE(server_->Signal(SIGSTOP).ok());
  const std::string new_value = Bytes(64 * kPartBytes, 2);
  std::atomic<bool> done{false};
  absl::Status put_status;
  std::thread writer([&] {
    put_status = store_->Put(id, new_value);
    done = true;
  });
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_FALSE(done.load()) << "the Put finished against a stopped server: " << put_status;
  ASSERT_TRUE(server_->Kill().ok());
  writer.join();
  EXPECT_EQ(put_status.code(), absl::StatusCode::kUnavailable) << put_status;
  EXPECT_THAT(std::string(put_status.message()), HasSubstr(absl::StrCat("127.0.0.1:", server_->port())));

  // While it is down, every call says so.
  absl::Status down = store_->Get(id).status();
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable) << down;
  EXPECT_THAT(std::string(down.message()), HasSubstr("cannot connect"));

  // The restarted server reloads its append-only file: the old entry and nothing of the new one.
  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_EQ(Keys(), keys_before);
  auto got = store_->Get(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == old_value) << "value changed across the interrupted Put";

  // The same store object works again.
  const std::string newer = Bytes(5 * kPartBytes, 3);
  ASSERT_TRUE(store_->Put(id, newer).ok());
  got = store_->Get(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == newer);
  EXPECT_EQ(Keys().size(), 6u);  // the old generation's parts are gone
}

TEST_F(RedisStoreFaultTest, RestartWhileIdleIsInvisibleToCallers) {
  const std::string id = Id(2);
  const std::string value = Bytes(kPartBytes / 2, 4);
  // Warm several pooled connections, which all go stale at the restart.
  std::vector<std::thread> readers;
  ASSERT_TRUE(store_->Put(id, value).ok());
  for (int i = 0; i < 4; ++i) readers.emplace_back([&] { EXPECT_TRUE(store_->Get(id).ok()); });
  for (std::thread& t : readers) t.join();

  ASSERT_TRUE(server_->Restart().ok());
  for (int i = 0; i < 6; ++i) {
    auto got = store_->Get(id);
    ASSERT_TRUE(got.ok()) << "call " << i << ": " << got.status();
    EXPECT_TRUE(*got == value);
  }
  EXPECT_TRUE(store_->Put(Id(3), "after restart").ok());
  EXPECT_TRUE(store_->Stat(Id(3)).ok());
  auto page = store_->List("", 0, "");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->entries.size(), 2u);
}

}  // namespace
}  // namespace kvc
