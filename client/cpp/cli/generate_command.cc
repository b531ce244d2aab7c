// `kvc generate`: stored caches and a question in, the streamed answer out.
#include <memory>
#include <ostream>

#include "client/cpp/cli/answer_stream.h"
#include "client/cpp/cli/commands.h"
#include "client/cpp/cli/output_format.h"
#include "client/cpp/cli/request_flags.h"

namespace kvc::cli {

void AddGenerateCommand(CLI::App& root, CliContext& ctx, CommandTable& table) {
  struct Flags {
    std::vector<std::string> cache_ids;
    std::string query;
    std::string model;
    SamplingFlags sampling;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = root.add_subcommand("generate", "Generate an answer from stored caches");
  sub->add_option("-c,--cache-id", flags->cache_ids, "Cache to decode from, repeatable (composed in order)")
      ->type_name("ID")
      ->required();
  sub->add_option("-q,--query", flags->query, "The question")->type_name("TEXT")->required();
  sub->add_option("--model", flags->model, "Fail unless the server runs this model (name or fingerprint)")
      ->type_name("NAME");
  flags->sampling.Register(sub);
  sub->footer(
      "Loads the caches (several are composed in order into one context), feeds the question after them\n"
      "and streams the answer to stdout as it is decoded. Usage (tokens, finish reason, timings) goes to\n"
      "stderr. Pass the same query that was given to `kvc compress` for a query-aware cache."
      "\n\n"
      "Examples:\n"
      "  kvc generate --cache-id $ID --query \"Who founded the company?\"\n"
      "  kvc generate -c $ID1 -c $ID2 -q \"Compare them.\" --temperature 0.7 --top-p 0.9 --seed 1 --max-tokens 64");

  table.Add(sub, [&ctx, flags]() -> int {
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    kvc::v1::GenerateRequest request;
    for (const std::string& id : flags->cache_ids) request.add_cache_ids(id);
    request.set_query(flags->query);
    *request.mutable_sampling() = flags->sampling.Params();
    if (!flags->model.empty()) request.set_model(flags->model);

    const Answer answer = StreamAnswer(**client, request, ctx.json() ? nullptr : &ctx.out());
    if (!answer.usage.ok()) return ctx.Fail(answer.usage.status());
    if (ctx.json()) {
      ctx.out() << nlohmann::json{{"text", answer.text},
                                  {"token_ids", answer.token_ids},
                                  {"usage", UsageJson(*answer.usage)},
                                  {"wall_seconds", answer.wall_seconds}}
                       .dump()
                << std::endl;
    } else {
      ctx.err() << "usage: " << UsageLine(*answer.usage) << "\n"
                << "generate timings: " << GenerateTimingsLine(answer.usage->timings()) << std::endl;
    }
    return kExitOk;
  });
}

}  // namespace kvc::cli
