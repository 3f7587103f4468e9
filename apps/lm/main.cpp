// bittorch-lm: trains, samples and exports byte-level transformer language models, full
// precision or ternary (BitNet b1.58), on Shakespeare by default.

#include "common/cli.h"
#include "lm/commands.h"

#include <cstring>
#include <iostream>
#include <string>

namespace {

void usage(std::ostream& out) {
  out << "Usage: bittorch-lm COMMAND [OPTION...]   (bittorch-lm COMMAND --help lists them)\n"
         "Commands:\n"
         "  train    train a model (fp, ternary, or both with --compare) on a text corpus\n"
         "  sample   generate text from a checkpoint or a packed model file\n"
         "  export   write a checkpoint's model as a packed model file\n"
         "  bench    training and generation throughput, fp against ternary\n"
         "  import   convert a Hugging Face BitNet checkpoint folder into a packed model file\n"
         "Options:\n"
         "  -h, --help     this list\n"
         "      --version  print the version and exit\n";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "train") return bittorch::apps::train_command(argc - 1, argv + 1);
  if (command == "sample") return bittorch::apps::sample_command(argc - 1, argv + 1);
  if (command == "export") return bittorch::apps::export_command(argc - 1, argv + 1);
  if (command == "bench") return bittorch::apps::bench_command(argc - 1, argv + 1);
  if (command == "import") return bittorch::apps::import_command(argc - 1, argv + 1);
  if (command == "--help" || command == "-h") {
    usage(std::cout);
    return 0;
  }
  if (command == "--version") {
    std::cout << bittorch::apps::version_line("bittorch-lm") << "\n";
    return 0;
  }
  std::cerr << "bittorch-lm: error: " << (command.empty() ? "no command given" : "unknown command '" + command + "'")
            << "\n";
  usage(std::cerr);
  return 2;
}
