// Cuts streamed text at stop strings without ever releasing part of one: text that could be the start of a
// stop string is held back until the following text shows whether it is.
//
// Thread safety: one filter per stream.
#ifndef KVC_COMPRESSOR_GENERATE_STOP_STRINGS_H_
#define KVC_COMPRESSOR_GENERATE_STOP_STRINGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace kvc {

class StopStringFilter {
 public:
  // `stops`: non-empty, valid UTF-8 strings (so that held-back text always begins on a character boundary).
  explicit StopStringFilter(std::vector<std::string> stops);

  // Appends `text` to the stream and returns the part that is now safe to release. Once a stop string is
  // found, stopped() turns true, the returned text ends right before it, and everything after is dropped.
  std::string Add(absl::string_view text);
  // End of stream: releases whatever is held back (it turned out not to be a stop string).
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  size_t longest_ = 0;
  // Text received but not released: never a complete stop string, at most longest_ - 1 bytes after Add.
  std::string held_;
  bool stopped_ = false;
};

}  // namespace kvc

#endif  // KVC_COMPRESSOR_GENERATE_STOP_STRINGS_H_
