// Structured logs for the server: one line per event, as `text` (timestamp, level, message, key=value
// pairs) or `json` (one object per line, for log collectors). Every RPC's lines carry its request id.
//
// Ownership: a Log owns its spdlog logger; there is no global logger. Thread safety: every method may be
// called concurrently (the sink is synchronized).
#ifndef KVC_SERVICE_LOGGING_H_
#define KVC_SERVICE_LOGGING_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvc {

using LogFields = std::vector<std::pair<std::string, nlohmann::json>>;

class Log {
 public:
  // format: "text" or "json" (INVALID_ARGUMENT otherwise). `sink` defaults to stderr.
  static absl::StatusOr<std::unique_ptr<Log>> Create(const std::string& format,
                                                     std::shared_ptr<spdlog::sinks::sink> sink = nullptr);

  void Info(absl::string_view message, const LogFields& fields = {}) { Write(spdlog::level::info, message, fields); }
  void Warn(absl::string_view message, const LogFields& fields = {}) { Write(spdlog::level::warn, message, fields); }
  void Error(absl::string_view message, const LogFields& fields = {}) { Write(spdlog::level::err, message, fields); }

 private:
  Log(std::shared_ptr<spdlog::logger> logger, bool json) : logger_(std::move(logger)), json_(json) {}
  void Write(spdlog::level::level_enum level, absl::string_view message, const LogFields& fields);

  std::shared_ptr<spdlog::logger> logger_;
  bool json_;
};

// A fresh request id: 16 lowercase hex characters from a per-process random source.
std::string NewRequestId();

}  // namespace kvc

#endif  // KVC_SERVICE_LOGGING_H_
