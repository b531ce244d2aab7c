// `kvc ask`: compress then generate in one command, with the compression ratio and the timings.
#include <memory>
#include <ostream>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/cpp/cli/answer_stream.h"
#include "client/cpp/cli/commands.h"
#include "client/cpp/cli/output_format.h"
#include "client/cpp/cli/request_flags.h"

namespace kvc::cli {

void AddAskCommand(CLI::App& root, CliContext& ctx, CommandTable& table) {
  struct Flags {
    CompressFlags compress;
    SamplingFlags sampling;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = root.add_subcommand("ask", "Compress documents for a question, then answer it from the cache");
  flags->compress.Register(sub, /*query_required=*/true);
  flags->sampling.Register(sub);
  sub->footer(
      "Runs `kvc compress` and then `kvc generate` with the same question: the answer streams to stdout;\n"
      "the compression (tokens in -> tokens out, the ratio), the server's timings of both steps and the\n"
      "client's wall times go to stderr. The cache stays stored; asking again is a cache hit."
      "\n\n"
      "Examples:\n"
      "  kvc ask docs/samples/report.txt --query \"What was the revenue in 2023?\" --ratio 8\n"
      "  kvc ask a.txt b.txt -q \"Summarize.\" --method snapkv --target-tokens 256 --max-tokens 128");

  table.Add(sub, [&ctx, flags]() -> int {
    absl::StatusOr<kvc::v1::CompressRequest> request = flags->compress.Request(ctx.in());
    if (!request.ok()) return ctx.UsageError(std::string(request.status().message()));
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());

    const absl::Time start = absl::Now();
    absl::StatusOr<kvc::v1::CompressResponse> compressed = (*client)->Compress(*request);
    const double compress_wall = absl::ToDoubleSeconds(absl::Now() - start);
    if (!compressed.ok()) return ctx.Fail(compressed.status());
    const kvc::v1::CacheInfo& info = compressed->info();

    kvc::v1::GenerateRequest generate;
    generate.add_cache_ids(compressed->cache_id());
    generate.set_query(flags->compress.query);
    *generate.mutable_sampling() = flags->sampling.Params();
    if (!flags->compress.spec.model.empty()) generate.set_model(flags->compress.spec.model);
    const Answer answer = StreamAnswer(**client, generate, ctx.json() ? nullptr : &ctx.out());
    if (!answer.usage.ok()) return ctx.Fail(answer.usage.status());
    const double total_wall = absl::ToDoubleSeconds(absl::Now() - start);

    if (ctx.json()) {
      ctx.out() << nlohmann::json{{"answer", answer.text},
                                  {"token_ids", answer.token_ids},
                                  {"cache_id", compressed->cache_id()},
                                  {"cache_hit", compressed->cache_hit()},
                                  {"info", CacheInfoJson(info)},
                                  {"usage", UsageJson(*answer.usage)},
                                  {"wall_seconds",
                                   {{"compress", compress_wall},
                                    {"generate", answer.wall_seconds},
                                    {"total", total_wall}}}}
                       .dump()
                << std::endl;
      return kExitOk;
    }
    ctx.err() << absl::StrFormat("compression: %d -> %d tokens (%.2fx), method %s, cache_hit %s, cache_id %s\n",
                                 info.tokens_in(), info.tokens_out(), CompressionRatio(info),
                                 info.spec().method(), compressed->cache_hit() ? "true" : "false",
                                 compressed->cache_id())
              << "compress timings: " << TimingsLine(info.timings()) << "\n"
              << "usage: " << UsageLine(*answer.usage) << "\n"
              << "generate timings: " << GenerateTimingsLine(answer.usage->timings()) << "\n"
              << absl::StrFormat("wall: compress=%.3fs generate=%.3fs total=%.3fs", compress_wall,
                                 answer.wall_seconds, total_wall)
              << std::endl;
    return kExitOk;
  });
}

}  // namespace kvc::cli
