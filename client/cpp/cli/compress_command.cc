// `kvc compress`: documents and a query in, the id of the stored compressed cache out.
#include <memory>
#include <ostream>

#include "client/cpp/cli/commands.h"
#include "client/cpp/cli/output_format.h"
#include "client/cpp/cli/request_flags.h"

namespace kvc::cli {

void AddCompressCommand(CLI::App& root, CliContext& ctx, CommandTable& table) {
  struct Flags {
    CompressFlags compress;
    bool quiet = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* sub = root.add_subcommand("compress", "Compress documents for a query into a stored KV cache");
  flags->compress.Register(sub, /*query_required=*/false);
  sub->add_flag("--id-only", flags->quiet, "Print only the cache id (for scripts: ID=$(kvc compress --id-only ...))");
  sub->footer(
      "Sends the documents and the query to the compress role, which prefills the model over\n"
      "[system prompt][documents], keeps the context tokens the query needs (the spec's method and budget)\n"
      "and stores the result. Prints the cache id and what the cache holds. The same request gives the\n"
      "same id, and a stored id is answered from the store with no compute (cache_hit: true)."
      "\n\n"
      "Examples:\n"
      "  kvc compress doc1.txt doc2.txt --query \"Who founded the company?\" --ratio 8\n"
      "  cat doc.txt | kvc compress --query \"When?\" --method snapkv --target-tokens 512 --option window=query\n"
      "  kvc compress notes.txt --method knorm --ratio 4 --dtype bf16 --codec zstd --json");

  table.Add(sub, [&ctx, flags]() -> int {
    absl::StatusOr<kvc::v1::CompressRequest> request = flags->compress.Request(ctx.in());
    if (!request.ok()) return ctx.UsageError(std::string(request.status().message()));
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    absl::StatusOr<kvc::v1::CompressResponse> response = (*client)->Compress(*request);
    if (!response.ok()) return ctx.Fail(response.status());
    if (ctx.json()) {
      ctx.out() << nlohmann::json{{"cache_id", response->cache_id()},
                                  {"cache_hit", response->cache_hit()},
                                  {"info", CacheInfoJson(response->info())}}
                       .dump()
                << std::endl;
    } else if (flags->quiet) {
      ctx.out() << response->cache_id() << std::endl;
    } else {
      ctx.out() << "cache_id: " << response->cache_id() << "\n";
      ctx.out() << "cache_hit: " << (response->cache_hit() ? "true" : "false") << "\n";
      PrintCacheInfo(ctx.out(), response->info(), /*with_id=*/false);
      ctx.out().flush();
    }
    return kExitOk;
  });
}

}  // namespace kvc::cli
