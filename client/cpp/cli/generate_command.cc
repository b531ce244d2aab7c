// `kvc generate`: stored caches and one or more questions in, the streamed answers out.
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cpp/cli/answer_stream.h"
#include "client/cpp/cli/commands.h"
#include "client/cpp/cli/output_format.h"
#include "client/cpp/cli/request_flags.h"

namespace kvc::cli {

void AddGenerateCommand(CLI::App& root, CliContext& ctx, CommandTable& table) {
  struct Flags {
    std::vector<std::string> cache_ids;
    std::vector<std::string> queries;
    std::string model;
    SamplingFlags sampling;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = root.add_subcommand("generate", "Generate an answer from stored caches");
  sub->add_option("-c,--cache-id", flags->cache_ids, "Cache to decode from, repeatable (composed in order)")
      ->type_name("ID")
      ->required();
  sub->add_option("-q,--query", flags->queries,
                  "The question; repeat it for several, answered one after another from one load of the caches")
      ->type_name("TEXT")
      ->required();
  sub->add_option("--model", flags->model, "Fail unless the server runs this model (name or fingerprint)")
      ->type_name("NAME");
  flags->sampling.Register(sub);
  sub->footer(
      "Loads the caches (several are composed in order into one context), feeds the question after them\n"
      "and streams the answer to stdout as it is decoded. Usage (tokens, finish reason, timings) goes to\n"
      "stderr. Pass the same query that was given to `kvc compress` for a query-aware cache.\n"
      "With several --query, the caches are loaded once and each question is answered as if alone, in\n"
      "order; each answer is printed under a line \"[i] question\", and usage lines are numbered the same."
      "\n\n"
      "Examples:\n"
      "  kvc generate --cache-id $ID --query \"Who founded the company?\"\n"
      "  kvc generate -c $ID -q \"Who founded it?\" -q \"When?\"\n"
      "  kvc generate -c $ID1 -c $ID2 -q \"Compare them.\" --temperature 0.7 --top-p 0.9 --seed 1 --max-tokens 64");

  table.Add(sub, [&ctx, flags]() -> int {
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    kvc::v1::GenerateRequest request;
    for (const std::string& id : flags->cache_ids) request.add_cache_ids(id);
    const bool several = flags->queries.size() > 1;
    if (several) {
      for (const std::string& q : flags->queries) request.mutable_questions()->add_queries(q);
    } else {
      request.set_query(flags->queries.front());
    }
    *request.mutable_sampling() = flags->sampling.Params();
    if (!flags->model.empty()) request.set_model(flags->model);

    const std::vector<Answer> answers = StreamAnswers(**client, request, ctx.json() ? nullptr : &ctx.out());
    auto answer_json = [](const Answer& a) {
      return nlohmann::json{{"text", a.text}, {"token_ids", a.token_ids}, {"usage", UsageJson(*a.usage)}};
    };
    for (size_t i = 0; i < answers.size(); ++i) {
      const Answer& a = answers[i];
      if (!a.usage.ok()) return ctx.Fail(a.usage.status());
      if (ctx.json()) continue;
      const std::string tag = several ? absl::StrCat("[", i + 1, "]") : "";
      ctx.err() << "usage" << tag << ": " << UsageLine(*a.usage) << "\n"
                << "generate timings" << tag << ": " << GenerateTimingsLine(a.usage->timings()) << std::endl;
    }
    if (ctx.json()) {
      nlohmann::json j;
      if (several) {
        j["answers"] = nlohmann::json::array();
        for (size_t i = 0; i < answers.size(); ++i) {
          nlohmann::json one = answer_json(answers[i]);
          one["question"] = flags->queries[i];
          j["answers"].push_back(std::move(one));
        }
      } else {
        j = answer_json(answers.front());
      }
      j["wall_seconds"] = answers.front().wall_seconds;
      ctx.out() << j.dump() << std::endl;
    }
    return kExitOk;
  });
}

}  // namespace kvc::cli
