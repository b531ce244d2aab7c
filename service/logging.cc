#include "service/logging.h"

#include <spdlog/sinks/stdout_sinks.h>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvc {
namespace {

// Text values are bare when they are one plain word, else JSON-quoted, so that a line splits unambiguously.
std::string TextValue(const nlohmann::json& v) {
  if (!v.is_string()) return v.dump();
  const std::string& s = v.get_ref<const std::string&>();
  bool plain = !s.empty();
  for (char c : s) plain = plain && c > ' ' && c != '"' && c != '=' && static_cast<unsigned char>(c) < 0x7f;
  return plain ? s : v.dump();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Log>> Log::Create(const std::string& format,
                                                 std::shared_ptr<spdlog::sinks::sink> sink) {
  if (format != "text" && format != "json") {
    return absl::InvalidArgumentError(absl::StrCat("log format \"", format, "\": expected text or json"));
  }
  if (sink == nullptr) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("kvc", std::move(sink));
  logger->set_pattern("%v");  // the line is fully formatted here, so both formats share one sink
  logger->set_level(spdlog::level::info);
  logger->flush_on(spdlog::level::info);
  return std::unique_ptr<Log>(new Log(std::move(logger), format == "json"));
}

void Log::Write(spdlog::level::level_enum level, absl::string_view message, const LogFields& fields) {
  const std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  const char* lvl = level == spdlog::level::info ? "info" : level == spdlog::level::warn ? "warn" : "error";
  std::string line;
  if (json_) {
    nlohmann::ordered_json j = {{"ts", ts}, {"level", lvl}, {"msg", std::string(message)}};
    for (const auto& [k, v] : fields) j[k] = v;
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = absl::StrCat(ts, " ", lvl, " ", message);
    for (const auto& [k, v] : fields) absl::StrAppend(&line, " ", k, "=", TextValue(v));
  }
  logger_->log(level, line);
}

std::string NewRequestId() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  uint64_t v;
  {
    absl::MutexLock lock(&mu);
    v = absl::Uniform<uint64_t>(*gen);
  }
  return absl::StrFormat("%016x", v);
}

}  // namespace kvc
