#include "client/cpp/cli/answer_stream.h"

#include <algorithm>
#include <ostream>
#include <utility>

#include "absl/time/clock.h"

namespace kvc::cli {

std::vector<Answer> StreamAnswers(KvcClient& client, const kvc::v1::GenerateRequest& request, std::ostream* live) {
  const bool several = request.has_questions();
  const int count = several ? request.questions().queries_size() : 1;
  std::vector<Answer> answers(std::max(count, 1));
  int started = 0;  // answers whose header (if any) is written
  const auto end_line = [&](const Answer& a) {
    if (live != nullptr && !a.text.empty() && a.text.back() != '\n') *live << "\n";
  };
  const auto start = [&](int question) {
    while (started <= question && started < count) {
      if (started > 0) end_line(answers[started - 1]);
      if (live != nullptr && several) *live << "[" << started + 1 << "] " << request.questions().queries(started) << "\n";
      ++started;
    }
  };
  const absl::Time t0 = absl::Now();
  absl::StatusOr<std::vector<kvc::v1::Usage>> usages = client.GenerateAnswers(
      request,
      [&](const kvc::v1::TextDelta& delta) {
        start(delta.question());
        Answer& a = answers[delta.question()];
        a.text += delta.text();
        a.token_ids.insert(a.token_ids.end(), delta.token_ids().begin(), delta.token_ids().end());
        if (live != nullptr && !delta.text().empty()) *live << delta.text() << std::flush;
      },
      [&](const kvc::v1::Usage& usage) {
        start(usage.question());
        answers[usage.question()].usage = usage;
      });
  const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
  if (started > 0) end_line(answers[started - 1]);
  if (live != nullptr) *live << std::flush;
  for (Answer& a : answers) {
    a.wall_seconds = wall;
    if (!usages.ok() && !a.usage.ok()) a.usage = usages.status();
  }
  return answers;
}

Answer StreamAnswer(KvcClient& client, const kvc::v1::GenerateRequest& request, std::ostream* live) {
  return std::move(StreamAnswers(client, request, live).front());
}

}  // namespace kvc::cli
