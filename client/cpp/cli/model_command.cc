// `kvc model`: what the compress role serves.
#include <memory>
#include <ostream>

#include "client/cpp/cli/commands.h"
#include "client/cpp/cli/output_format.h"

namespace kvc::cli {

void AddModelCommand(CLI::App& root, CliContext& ctx, CommandTable& table) {
  CLI::App* sub = root.add_subcommand("model", "Describe the served model, its methods and the server's limits");
  sub->footer(
      "Prints Compressor.GetModelInfo: name, fingerprint, architecture and shape, device and dtype, chat\n"
      "format, special tokens, the server's limits, and each compression method with its options, their\n"
      "defaults and what they do.");
  table.Add(sub, [&ctx]() -> int {
    absl::StatusOr<KvcClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    absl::StatusOr<kvc::v1::ModelInfo> info = (*client)->GetModelInfo();
    if (!info.ok()) return ctx.Fail(info.status());
    if (ctx.json()) {
      ctx.out() << ModelInfoJson(*info).dump() << std::endl;
    } else {
      PrintModelInfo(ctx.out(), *info);
      ctx.out().flush();
    }
    return kExitOk;
  });
}

}  // namespace kvc::cli
