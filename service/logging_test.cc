// Log lines in both formats, with fields, quoting and request ids.
#include "service/logging.h"

#include <set>
#include <sstream>

#include <spdlog/sinks/ostream_sink.h>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

TEST(LogTest, TextLinesCarryFieldsAndQuoteWhatNeedsIt) {
  std::ostringstream out;
  auto log = Log::Create("text", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  ASSERT_TRUE(log.ok());
  (*log)->Info("compress done", {{"request_id", "00ff"}, {"tokens", 4000}, {"error", "bad \"input\" here"}});
  const std::string line = out.str();
  EXPECT_TRUE(absl::StrContains(line, " info compress done request_id=00ff tokens=4000 error=\"bad \\\"input\\\" here\""))
      << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

TEST(LogTest, JsonLinesParse) {
  std::ostringstream out;
  auto log = Log::Create("json", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  ASSERT_TRUE(log.ok());
  (*log)->Warn("queue full", {{"request_id", "abcd"}, {"queued_tokens", 9000}, {"bytes", std::string("\xff\xfe")}});
  auto j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["level"], "warn");
  EXPECT_EQ(j["msg"], "queue full");
  EXPECT_EQ(j["request_id"], "abcd");
  EXPECT_EQ(j["queued_tokens"], 9000);
  EXPECT_TRUE(j.contains("ts"));
}

TEST(LogTest, RejectsUnknownFormatsAndMakesDistinctIds) {
  EXPECT_EQ(Log::Create("xml").status().code(), absl::StatusCode::kInvalidArgument);
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewRequestId();
    ASSERT_EQ(id.size(), 16u);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

}  // namespace
}  // namespace kvc
