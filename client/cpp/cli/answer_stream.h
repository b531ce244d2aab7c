// Runs one Generate call for `kvc generate` and `kvc ask`: streams the text to a stream as it arrives
// (each delta flushed, so a terminal shows tokens as they come) and keeps the whole answer, or one answer
// per question when the request has several.
//
// Thread safety: one call per thread; `live` is written only from the calling thread.
#ifndef KVC_CLIENT_CPP_CLI_ANSWER_STREAM_H_
#define KVC_CLIENT_CPP_CLI_ANSWER_STREAM_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cpp/kvc_client.h"

namespace kvc::cli {

struct Answer {
  std::string text;                 // every delta's text, concatenated
  std::vector<int32_t> token_ids;   // every generated token id
  absl::StatusOr<kvc::v1::Usage> usage = absl::UnknownError("not run");
  double wall_seconds = 0;          // client-side, request to end of stream (of the whole call)
};

// `live`: where to stream the text, or null to stream nothing. When something was streamed, a final
// newline is added unless the text already ends with one (also when the stream fails midway).
Answer StreamAnswer(KvcClient& client, const kvc::v1::GenerateRequest& request, std::ostream* live);

// Any request, several questions included: one Answer per question, in order. An answer the stream did not
// finish holds the call's error as its usage. With `live` and request.questions, each answer is streamed
// under a line "[i] question" (i from 1), the line written when the answer starts.
std::vector<Answer> StreamAnswers(KvcClient& client, const kvc::v1::GenerateRequest& request, std::ostream* live);

}  // namespace kvc::cli

#endif  // KVC_CLIENT_CPP_CLI_ANSWER_STREAM_H_
