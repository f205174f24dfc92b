// Entry point: dispatches to a subcommand and turns its Status into one error line
// on stderr and an exit code (1 for errors, 2 for a wrong command line).
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "util/text.h"

namespace cellcube::cli {

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"inspect", "describe an .h5ad file: matrices, obs and var columns", kInspectHelp,
       RunInspect},
      {"build", "aggregate .h5ad files into a store", kBuildHelp, RunBuild},
      {"add", "add datasets to a store", kAddHelp, RunAdd},
      {"remove", "remove datasets from a store", kRemoveHelp, RunRemove},
      {"merge", "combine stores with disjoint datasets", kMergeHelp, RunMerge},
      {"info", "describe a store: datasets, columns, size", kInfoHelp, RunInfo},
      {"serve", "serve a store: web page and JSON API", kServeHelp, RunServe},
      {"demo", "synthesise an atlas, build its store and serve it", kDemoHelp, RunDemo},
      {"query", "answer a dot-plot query: genes x splits, from a store", kQueryHelp, RunQuery},
      {"synth", "write synthetic single-cell .h5ad files to try cellcube on", kSynthHelp, RunSynth},
  };
  return kCommands;
}

namespace {

void PrintUsage(std::ostream& out) {
  out << "usage: cellcube COMMAND [options]\n\n"
         "cellcube turns a folder of AnnData (.h5ad) files into one compact store of\n"
         "per-cell-group gene statistics and answers dot-plot queries from it.\n\n"
         "commands:\n";
  for (const auto& c : Commands()) {
    std::string name = c.name;
    out << "  " << name << std::string(10 - std::min<size_t>(9, name.size()), ' ') << c.summary
        << "\n";
  }
  out << "\n'cellcube COMMAND --help' explains a command.\n";
}

int ExitCode(const Status& s) { return s.code() == StatusCode::kUsage ? 2 : 1; }

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    PrintUsage(std::cerr);
    return 2;
  }
  const std::string& name = args[0];
  if (name == "-h" || name == "--help" || name == "help") {
    PrintUsage(std::cout);
    return 0;
  }
  if (name == "--version") {
    std::cout << "cellcube " << CELLCUBE_VERSION << "\n";
    return 0;
  }
  std::vector<std::string> names;
  for (const auto& c : Commands()) {
    names.push_back(c.name);
    if (name != c.name) continue;
    std::vector<std::string> rest(args.begin() + 1, args.end());
    for (const auto& a : rest) {
      if (a == "-h" || a == "--help") {
        std::cout << c.help;
        return 0;
      }
    }
    Status s = c.run(rest);
    if (s.ok()) return 0;
    std::cout.flush();
    std::string line = s.message();
    for (char& ch : line)
      if (ch == '\n' || ch == '\r') ch = ' ';
    std::cerr << "cellcube: error: " << line << "\n";
    return ExitCode(s);
  }
  std::cerr << "cellcube: error: unknown command '" << name << "'" << SuggestionSuffix(name, names)
            << "; 'cellcube --help' lists the commands\n";
  return 2;
}

}  // namespace
}  // namespace cellcube::cli

int main(int argc, char** argv) {
  try {
    return cellcube::cli::Main(argc, argv);
  } catch (const std::bad_alloc&) {
    std::cerr << "cellcube: error: out of memory\n";
  } catch (const std::exception& e) {
    std::cerr << "cellcube: error: internal error: " << e.what() << "\n";
  }
  return 1;
}
