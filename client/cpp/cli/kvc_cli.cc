#include "client/cpp/cli/kvc_cli.h"

#include <iostream>

#include <CLI/CLI.hpp>

#include "client/cpp/cli/cli_context.h"
#include "client/cpp/cli/commands.h"
#include "client/cpp/cli/request_flags.h"

namespace kvc::cli {
namespace {

void AddGlobalFlags(CLI::App& app, GlobalFlags& flags) {
  app.add_option("--server", flags.server, "Server address host:port, or any gRPC target (dns:///..., unix:...)")
      ->envname("KVC_SERVER")
      ->capture_default_str()
      ->type_name("ADDR");
  app.add_option("--token", flags.token, "Bearer token sent with every call")
      ->envname("KVC_TOKEN")
      ->type_name("TOKEN");
  app.add_option("--tls-ca", flags.tls_ca, "Use TLS, verifying the server with this PEM CA bundle")
      ->envname("KVC_TLS_CA")
      ->type_name("FILE")
      ->check(Quiet(CLI::ExistingFile));
  CLI::Option* cert = app.add_option("--tls-cert", flags.tls_cert, "Client certificate (PEM) for mutual TLS")
                          ->envname("KVC_TLS_CERT")
                          ->type_name("FILE")
                          ->check(Quiet(CLI::ExistingFile));
  CLI::Option* key = app.add_option("--tls-key", flags.tls_key, "Private key (PEM) of --tls-cert")
                         ->envname("KVC_TLS_KEY")
                         ->type_name("FILE")
                         ->check(Quiet(CLI::ExistingFile));
  cert->needs(key);
  key->needs(cert);
  app.add_option("--tls-server-name", flags.tls_server_name,
                 "Verify the server's certificate for this host name instead of the one in --server")
      ->type_name("NAME");
  app.add_option("--timeout", flags.timeout_seconds, "Deadline of each call in seconds, retries included; 0: none")
      ->envname("KVC_TIMEOUT")
      ->capture_default_str()
      ->type_name("SECONDS")
      ->check(Quiet(CLI::NonNegativeNumber));
  app.add_option("--retries", flags.retries,
                 "Retries of a call that fails with UNAVAILABLE (exponential backoff with jitter), 0 to 100")
      ->capture_default_str()
      ->type_name("N")
      ->check(Quiet(CLI::Range(0, 100)));
  app.add_flag("--json", flags.json, "Machine-readable output: one JSON object per result (see docs/cli.md)");
}

}  // namespace

int RunKvcCli(int argc, char** argv, std::istream& in, std::ostream& out, std::ostream& err) {
  CliContext ctx(in, out, err);
  CLI::App app("kvc: the client of a kvc server, which compresses the KV cache of an LLM for RAG",
               "kvc");
  app.get_formatter()->column_width(36);
  // Global flags may also follow the subcommand: `kvc cache ls --server host:port`.
  app.fallthrough();
  app.require_subcommand(1);
  AddGlobalFlags(app, ctx.flags());
  app.footer(
      "Every command talks to a kvc-server (--server, default localhost:50051). Run `kvc <command> --help`\n"
      "for its flags; docs/cli.md is the full manual, with the output formats.\n"
      "Exit status: 0 success; 1 error from the server or the connection (\"error: <CODE>: <message>\" on\n"
      "stderr); 2 usage error.\n"
      "Environment: KVC_SERVER, KVC_TOKEN, KVC_TLS_CA, KVC_TLS_CERT, KVC_TLS_KEY, KVC_TIMEOUT.\n"
      "Example:\n"
      "  kvc ask docs/samples/report.txt --query \"What was the revenue in 2023?\" --ratio 8");

  CommandTable table;
  AddCompressCommand(app, ctx, table);
  AddGenerateCommand(app, ctx, table);
  AddAskCommand(app, ctx, table);
  AddPrecomputeCommand(app, ctx, table);
  AddCacheCommands(app, ctx, table);
  AddHealthCommand(app, ctx, table);
  AddModelCommand(app, ctx, table);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help ends parsing with a "successful" error; everything else is a usage error.
    const int code = app.exit(e, out, err);
    return code == 0 ? kExitOk : kExitUsage;
  }
  const CommandTable::Runner* run = table.Selected();
  if (run == nullptr) {
    err << "error: no command given; run `kvc --help`" << std::endl;
    return kExitUsage;
  }
  return (*run)();
}

}  // namespace kvc::cli
