// The `kvc` subcommands. Each Add*Command registers its subcommand (with its flags and manual text) on
// the root CLI::App and records the function that runs it once the command line has parsed; main runs
// the one the user picked.
//
// Runners return the process exit code (cli_context.h) and print errors themselves.
// Ownership: the table owns each command's flag storage, which the CLI::App refers to; keep the table
// alive as long as the App.
#ifndef KVC_CLIENT_CPP_CLI_COMMANDS_H_
#define KVC_CLIENT_CPP_CLI_COMMANDS_H_

#include <functional>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "client/cpp/cli/cli_context.h"

namespace kvc::cli {

class CommandTable {
 public:
  using Runner = std::function<int()>;

  void Add(CLI::App* command, Runner run) { commands_.emplace_back(command, std::move(run)); }
  // The runner of the parsed (innermost) subcommand, or null when none was parsed.
  const Runner* Selected() const {
    for (const auto& [command, run] : commands_) {
      if (command->parsed()) return &run;
    }
    return nullptr;
  }

 private:
  std::vector<std::pair<CLI::App*, Runner>> commands_;
};

void AddCompressCommand(CLI::App& root, CliContext& ctx, CommandTable& table);
void AddGenerateCommand(CLI::App& root, CliContext& ctx, CommandTable& table);
void AddAskCommand(CLI::App& root, CliContext& ctx, CommandTable& table);
void AddPrecomputeCommand(CLI::App& root, CliContext& ctx, CommandTable& table);
void AddCacheCommands(CLI::App& root, CliContext& ctx, CommandTable& table);
void AddHealthCommand(CLI::App& root, CliContext& ctx, CommandTable& table);
void AddModelCommand(CLI::App& root, CliContext& ctx, CommandTable& table);

}  // namespace kvc::cli

#endif  // KVC_CLIENT_CPP_CLI_COMMANDS_H_
