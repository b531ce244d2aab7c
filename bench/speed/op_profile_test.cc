#include "bench/speed/op_profile.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "compressor/methods/phase_span.h"

namespace kvc {
namespace {

const OpProfileRow* Find(const OpProfile& p, const std::string& kind, const std::string& name) {
  for (const OpProfileRow& row : p.rows) {
    if (row.kind == kind && row.name == name) return &row;
  }
  return nullptr;
}

// Three phases of three products each, two of them of one name (PhaseSpan, as the methods name theirs): the
// spans and the ops are counted as they ran, the trace is a Chrome trace holding them, and the table lists
// them.
TEST(OpProfileTest, CountsOpsAndScopes) {
  torch::Tensor a = torch::randn({64, 64});
  const std::string trace = (std::filesystem::temp_directory_path() / "kvc_op_profile_test.json").string();
  OpProfileOptions options;
  options.trace_path = trace;
  absl::StatusOr<OpProfile> p = ProfileCall(
      [&] {
        PhaseSpan phase("test.phase");
        for (int i = 0; i < 3; ++i) a = torch::mm(a, a).tanh();
        phase.Next("test.other");
        for (int i = 0; i < 3; ++i) a = torch::mm(a, a).tanh();
        phase.Next("test.phase");
        for (int i = 0; i < 3; ++i) a = torch::mm(a, a).tanh();
        return absl::OkStatus();
      },
      options);
  ASSERT_TRUE(p.ok()) << p.status();
  const OpProfileRow* mm = Find(*p, "op", "aten::mm");
  const OpProfileRow* scope = Find(*p, "scope", "test.phase");
  const OpProfileRow* other = Find(*p, "scope", "test.other");
  ASSERT_NE(mm, nullptr);
  ASSERT_NE(scope, nullptr);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(mm->count, 9);
  EXPECT_EQ(scope->count, 2);
  EXPECT_EQ(other->count, 1);
  EXPECT_GE(scope->total_ms, 0);
  EXPECT_LE(scope->total_ms + other->total_ms, p->wall_ms);
  EXPECT_EQ(p->kernels, 0);
  EXPECT_EQ(p->device_ms, 0);
  for (size_t i = 1; i < p->rows.size(); ++i) EXPECT_GE(p->rows[i - 1].total_ms, p->rows[i].total_ms);

  std::ifstream in(trace);
  nlohmann::json doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(doc.is_object()) << trace;
  int mm_events = 0;
  for (const auto& e : doc["traceEvents"]) mm_events += e.value("name", "") == "aten::mm";
  EXPECT_EQ(mm_events, 9);
  std::remove(trace.c_str());

  const std::string table = OpProfileTable(*p, 5);
  EXPECT_NE(table.find("| op | `aten::mm` | 9 |"), std::string::npos) << table;
  EXPECT_NE(table.find("| scope | `test.phase` | 2 |"), std::string::npos) << table;
}

// The call's own error comes back, and the profiler is stopped after it: a second profile starts.
TEST(OpProfileTest, ReturnsTheCallsErrorAndStops) {
  absl::StatusOr<OpProfile> p = ProfileCall([] { return absl::InvalidArgumentError("bad input"); }, {});
  EXPECT_EQ(p.status(), absl::InvalidArgumentError("bad input"));
  EXPECT_TRUE(ProfileCall([] { return absl::OkStatus(); }, {}).ok());
}

// A profile inside another is refused rather than tearing the outer one down.
TEST(OpProfileTest, RefusesANestedProfile) {
  absl::Status inner;
  absl::StatusOr<OpProfile> outer = ProfileCall(
      [&] {
        inner = ProfileCall([] { return absl::OkStatus(); }, {}).status();
        return absl::OkStatus();
      },
      {});
  EXPECT_TRUE(outer.ok()) << outer.status();
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace kvc
