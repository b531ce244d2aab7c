#include "service/pause_points.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvc {

absl::StatusOr<std::unique_ptr<PausePoints>> PausePoints::Create(const std::string& dir) {
  struct stat st;
  if (dir.empty() || ::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("--test-pause-dir: '", dir, "' is not a directory"));
  }
  return std::unique_ptr<PausePoints>(new PausePoints(dir));
}

namespace {

// The file's contents, or "" when it cannot be read (e.g. it is gone).
std::string ReadToken(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `token` to `path` under a temporary name first, so that a reader never sees half of it.
bool WriteToken(const std::string& path, const std::string& token) {
  const std::string temp = absl::StrCat(path, ".", token);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << token;
    if (!out.flush()) return false;
  }
  return std::rename(temp.c_str(), path.c_str()) == 0;
}

}  // namespace

void PausePoints::Reach(absl::string_view point, const std::function<bool()>& stopped) const {
  const std::string base = absl::StrCat(dir_, "/", point);
  const std::string armed = base + ".arm", held = base + ".held", stop_seen = base + ".stop_seen";
  // The rename is atomic: of the threads that arrive at once, exactly one takes the arm.
  if (std::rename(armed.c_str(), held.c_str()) != 0) return;
  // Each arm carries its own token, so a hold ends when its own file goes, even if another arrival holds
  // the point again at once. Only a held test call waits here, so a short poll costs nothing in service.
  const std::string token = ReadToken(held);
  bool seen = false;
  while (!token.empty() && ReadToken(held) == token) {
    if (!seen && stopped && stopped()) seen = WriteToken(stop_seen, token);
    absl::SleepFor(absl::Milliseconds(1));
  }
}

std::string PauseControl::Path(absl::string_view point, absl::string_view suffix) const {
  return absl::StrCat(dir_, "/", point, suffix);
}

absl::Status PauseControl::Arm(absl::string_view point) const {
  static std::atomic<uint64_t> counter{0};
  const std::string token = absl::StrCat(::getpid(), "-", counter.fetch_add(1), "-", absl::ToUnixNanos(absl::Now()));
  // Written under another name and renamed, so that an arrival never takes a half-written arm.
  const std::string path = Path(point, ".arm");
  if (!WriteToken(path, token)) return absl::InternalError(absl::StrCat("cannot create ", path));
  return absl::OkStatus();
}

void PauseControl::Disarm(absl::string_view point) const { std::remove(Path(point, ".arm").c_str()); }

bool PauseControl::Held(absl::string_view point) const {
  return ::access(Path(point, ".held").c_str(), F_OK) == 0;
}

absl::Status PauseControl::WaitHeld(absl::string_view point, absl::Time until,
                                    const std::function<bool()>& give_up) const {
  while (!Held(point)) {
    if (give_up && give_up()) return absl::CancelledError(absl::StrCat(point, ": gave up waiting for a hold"));
    if (absl::Now() >= until) return absl::DeadlineExceededError(absl::StrCat(point, ": nothing arrived"));
    absl::SleepFor(absl::Milliseconds(1));
  }
  return absl::OkStatus();
}

absl::Status PauseControl::WaitStopSeen(absl::string_view point, absl::Time until) const {
  // The token ties the file to the hold in place now, not to an earlier one at the same point.
  const std::string token = ReadToken(Path(point, ".held"));
  if (token.empty()) return absl::FailedPreconditionError(absl::StrCat(point, ": nothing is held"));
  while (ReadToken(Path(point, ".stop_seen")) != token) {
    if (absl::Now() >= until) return absl::DeadlineExceededError(absl::StrCat(point, ": the stop was not seen"));
    absl::SleepFor(absl::Milliseconds(1));
  }
  return absl::OkStatus();
}

absl::Status PauseControl::Release(absl::string_view point) const {
  std::remove(Path(point, ".stop_seen").c_str());
  if (std::remove(Path(point, ".held").c_str()) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(point, ": nothing is held"));
  }
  return absl::OkStatus();
}

absl::Status PauseControl::HoldAt(absl::string_view point, int arrival, absl::Time until,
                                  const std::function<bool()>& give_up) const {
  if (absl::Status s = Arm(point); !s.ok()) return s;
  return HoldAtArmed(point, arrival, until, give_up);
}

absl::Status PauseControl::HoldAtArmed(absl::string_view point, int arrival, absl::Time until,
                                       const std::function<bool()>& give_up) const {
  for (int n = 1;; ++n) {
    if (absl::Status s = WaitHeld(point, until, give_up); !s.ok()) return s;
    if (n == arrival) return absl::OkStatus();
    // Armed again before the release, so that the next arrival cannot slip past.
    if (absl::Status s = Arm(point); !s.ok()) return s;
    if (absl::Status s = Release(point); !s.ok()) return s;
  }
}

int PauseControl::CountArrivals(absl::string_view point, absl::Time until,
                                const std::function<bool()>& done) const {
  int arrivals = 0;
  // Armed again before each release, so that no arrival slips past uncounted.
  if (!Arm(point).ok()) return 0;
  while (WaitHeld(point, until, done).ok()) {
    ++arrivals;
    if (!Arm(point).ok() || !Release(point).ok()) break;
  }
  Disarm(point);
  return arrivals;
}

absl::StatusOr<std::unique_ptr<TempPauseDir>> TempPauseDir::Create() {
  std::error_code ec;
  std::string dir = (std::filesystem::temp_directory_path(ec) / "kvc-pause-XXXXXX").string();
  if (ec || ::mkdtemp(dir.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot make a temporary pause directory ", dir));
  }
  absl::StatusOr<std::unique_ptr<PausePoints>> points = PausePoints::Create(dir);
  if (!points.ok()) return points.status();
  return std::unique_ptr<TempPauseDir>(new TempPauseDir(std::move(dir), *std::move(points)));
}

TempPauseDir::~TempPauseDir() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace kvc
