// MeteredStore counts the store's own failures per op, not the caller's mistakes, and passes every result
// through unchanged.
#include "service/metered_store.h"

#include <prometheus/text_serializer.h>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "service/store/memory_store.h"

namespace kvc {
namespace {

// A memory store whose Put and List fail as an unreachable backend would.
class FailingStore final : public CacheStore {
 public:
  absl::Status Put(const std::string&, absl::string_view) override { return absl::UnavailableError("down"); }
  absl::StatusOr<std::string> Get(const std::string& id) override { return inner_->Get(id); }
  absl::StatusOr<CacheEntryInfo> Stat(const std::string& id) override { return inner_->Stat(id); }
  absl::Status Delete(const std::string& id) override { return inner_->Delete(id); }
  absl::StatusOr<ListPage> List(const std::string&, int, const std::string&) override {
    return absl::InternalError("broken");
  }
  std::string backend() const override { return "redis"; }

 private:
  std::unique_ptr<CacheStore> inner_{MemoryStore::Create()};
};

TEST(MeteredStoreTest, CountsStoreFailuresOnly) {
  prometheus::Registry registry;
  ServiceMetrics metrics(registry);
  MeteredStore store(std::make_unique<FailingStore>(), &metrics);
  EXPECT_EQ(store.backend(), "redis");
  const std::string id(64, 'a');
  EXPECT_EQ(store.Put(id, "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store.Put(id, "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store.Get(id).status().code(), absl::StatusCode::kNotFound);         // the caller's: not counted
  EXPECT_EQ(store.GetValue(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Stat("nothex").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.List("", 0, "").status().code(), absl::StatusCode::kInternal);
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  for (const char* line : {"kvc_store_errors_total{backend=\"redis\",op=\"put\"} 2",
                           "kvc_store_errors_total{backend=\"redis\",op=\"list\"} 1",
                           "kvc_store_errors_total{backend=\"redis\",op=\"get\"} 0",
                           "kvc_store_errors_total{backend=\"redis\",op=\"stat\"} 0",
                           "kvc_store_errors_total{backend=\"redis\",op=\"delete\"} 0"}) {
    EXPECT_TRUE(absl::StrContains(text, line)) << "missing: " << line << "\n" << text;
  }
}

}  // namespace
}  // namespace kvc
