#include "client/cpp/cli/answer_stream.h"

#include <ostream>

#include "absl/time/clock.h"

namespace kvc::cli {

Answer StreamAnswer(KvcClient& client, const kvc::v1::GenerateRequest& request, std::ostream* live) {
  Answer answer;
  const absl::Time start = absl::Now();
  answer.usage = client.Generate(request, [&](const kvc::v1::TextDelta& delta) {
    answer.text += delta.text();
    answer.token_ids.insert(answer.token_ids.end(), delta.token_ids().begin(), delta.token_ids().end());
    if (live != nullptr && !delta.text().empty()) *live << delta.text() << std::flush;
  });
  answer.wall_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (live != nullptr && !answer.text.empty() && answer.text.back() != '\n') *live << "\n" << std::flush;
  return answer;
}

}  // namespace kvc::cli
