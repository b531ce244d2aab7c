#include "compressor/generate/stop_strings.h"

#include <algorithm>
#include <utility>

namespace kvc {

StopStringFilter::StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const std::string& s : stops_) longest_ = std::max(longest_, s.size());
}

std::string StopStringFilter::Add(absl::string_view text) {
  if (stopped_) return std::string();
  held_.append(text.data(), text.size());
  // A stop string can only start inside held_: released text never ends with the start of one, so a match
  // reaching back into it would have been held (see the hold computation below).
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    std::string out = held_.substr(0, first);
    held_.clear();
    stopped_ = true;
    return out;
  }
  // Hold the longest tail of held_ that is a proper prefix of some stop string.
  size_t hold = 0;
  const size_t max_hold = std::min(held_.size(), longest_ > 0 ? longest_ - 1 : 0);
  for (size_t h = max_hold; h > 0 && hold == 0; --h) {
    absl::string_view tail = absl::string_view(held_).substr(held_.size() - h);
    for (const std::string& s : stops_) {
      if (s.size() > h && absl::string_view(s).substr(0, h) == tail) {
        hold = h;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopStringFilter::Flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace kvc
