// The `kvc` binary: see kvc_cli.h and docs/cli.md.
#include <iostream>

#include "client/cpp/cli/kvc_cli.h"

int main(int argc, char** argv) { return kvc::cli::RunKvcCli(argc, argv, std::cin, std::cout, std::cerr); }
