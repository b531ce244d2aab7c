#include "client/cpp/cli/progress_bar.h"

#include <algorithm>
#include <cmath>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvc::cli {
namespace {

std::string Clock(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

}  // namespace

ProgressBar::ProgressBar(int64_t total, std::ostream* out, absl::Mutex* out_mu, const ProgressBarOptions& options)
    : total_(std::max<int64_t>(total, 0)), out_(out), out_mu_(out_mu), options_(options), start_(absl::Now()) {}

std::string ProgressBar::Render(int64_t done, int64_t total, absl::Duration elapsed,
                                const ProgressBarOptions& options) {
  const double fraction = total > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0)
                                    : 1.0;
  const int filled = static_cast<int>(fraction * options.width);
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  const std::string eta = done >= total ? Clock(0)
                          : rate > 0    ? Clock(static_cast<double>(total - done) / rate)
                                        : std::string("--:--");
  return absl::StrFormat("[%s%s] %*d/%d %5.1f%% %7.2f %s/s  ETA %s", std::string(filled, '#'),
                         std::string(options.width - filled, '-'), static_cast<int>(absl::StrCat(total).size()),
                         done, total, 100.0 * fraction, rate, options.unit, eta);
}

void ProgressBar::Advance(int64_t n) {
  absl::MutexLock lock(out_mu_);
  done_ += n;
  DrawLocked(/*final_draw=*/false);
}

void ProgressBar::Finish() {
  absl::MutexLock lock(out_mu_);
  if (finished_) return;
  DrawLocked(/*final_draw=*/true);
  finished_ = true;
}

void ProgressBar::DrawLocked(bool final_draw) {
  if (finished_) return;
  const absl::Time now = absl::Now();
  const std::string line = Render(done_, total_, now - start_, options_);
  if (options_.interactive) {
    if (!final_draw && now - last_draw_ < absl::Milliseconds(100)) return;
    *out_ << "\r" << line << (final_draw ? "\n" : "") << std::flush;
  } else {
    const int decile = total_ > 0 ? static_cast<int>(10 * done_ / total_) : 10;
    if (!final_draw && decile == last_decile_) return;
    if (final_draw && done_ == last_drawn_done_) return;
    last_decile_ = decile;
    *out_ << line << "\n" << std::flush;
  }
  last_draw_ = now;
  last_drawn_done_ = done_;
}

}  // namespace kvc::cli
