// The `kvc` command line: parses argv, runs the chosen subcommand, returns the exit status.
//
//   0  success
//   1  the server (or the connection) answered with an error: "error: <CODE>: <message>" on stderr
//   2  usage error (bad flags or input files); nothing was sent
//
// docs/cli.md is the manual; `kvc --help` and `kvc <command> --help` print the same in short.
// Thread safety: one call at a time per set of streams.
#ifndef KVC_CLIENT_CPP_CLI_KVC_CLI_H_
#define KVC_CLIENT_CPP_CLI_KVC_CLI_H_

#include <iosfwd>

namespace kvc::cli {

int RunKvcCli(int argc, char** argv, std::istream& in, std::ostream& out, std::ostream& err);

}  // namespace kvc::cli

#endif  // KVC_CLIENT_CPP_CLI_KVC_CLI_H_
