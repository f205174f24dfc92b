// Entry point: dispatches to a subcommand and turns its Status into one error line
// on stderr and an exit code (1 for errors, 2 for a wrong command line).
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "util/isolate.h"
#include "util/text.h"

namespace cellcube::cli {

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"inspect", "describe an .h5ad file: matrices, obs and var columns", kInspectHelp, RunInspect,
       true},
      {"build", "aggregate .h5ad files into a store", kBuildHelp, RunBuild, true},
      {"add", "add datasets to a store", kAddHelp, RunAdd, true},
      {"remove", "remove datasets from a store", kRemoveHelp, RunRemove, true},
      {"merge", "combine stores with disjoint datasets", kMergeHelp, RunMerge, true},
      {"info", "describe a store: datasets, columns, size", kInfoHelp, RunInfo, true},
      // The server opens its store (and every replacement) isolated itself, and must stay
      // the process its supervisor signals.
      {"serve", "serve a store: web page and JSON API", kServeHelp, RunServe, false},
      {"demo", "synthesise an atlas, build its store and serve it", kDemoHelp, RunDemo, false},
      {"query", "answer a dot-plot query: genes x splits, from a store", kQueryHelp, RunQuery,
       true},
      {"synth", "write synthetic single-cell .h5ad files to try cellcube on", kSynthHelp, RunSynth,
       false},
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
  out << "\n'cellcube COMMAND --help' explains a command.\n\n"
         "Commands that read files do it in a child process, so that a damaged file\n"
         "gives one error line even where the HDF5 library itself crashes on it. Its\n"
         "memory is limited to 4 GiB plus twice the size of the files named (at most\n"
         "90% of RAM); CELLCUBE_MEMORY_LIMIT=SIZE (e.g. 32G, 512M, or off) sets it.\n";
}

int ExitCode(const Status& s) { return s.code() == StatusCode::kUsage ? 2 : 1; }

// Bytes of the files the arguments name (a directory: the files directly in it), which
// sets the default memory limit.
uint64_t BytesNamedBy(const std::vector<std::string>& args) {
  uint64_t total = 0;
  for (const auto& a : args) {
    std::error_code ec;
    const std::filesystem::path p(a);
    if (std::filesystem::is_regular_file(p, ec)) {
      total += std::filesystem::file_size(p, ec);
    } else if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(p, ec))
        if (e.is_regular_file(ec)) total += e.file_size(ec);
    }
  }
  return total;
}

// Runs a command that reads untrusted files in a child process (util/isolate.h).
Status RunIsolatedCommand(const Command& c, const std::vector<std::string>& args) {
  CC_ASSIGN_OR_RETURN(uint64_t limit, MemoryLimitFor(BytesNamedBy(args)));
  IsolationOptions options;
  options.memory_limit = limit;
  options.forward_signals = true;
  Status s = RunIsolated([&] { return c.run(args); }, options);
  if (s.code() == StatusCode::kOutOfMemory)
    return Status::OutOfMemory(s.message() +
                               "; CELLCUBE_MEMORY_LIMIT=SIZE (e.g. 32G, or off) sets the limit");
  return s;
}

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
    Status s = c.isolated ? RunIsolatedCommand(c, rest) : c.run(rest);
    if (s.ok()) return 0;
    std::cout.flush();
    // Messages quote names read from files: keep them one printable line.
    std::cerr << "cellcube: error: " << PrintableLine(s.message(), 2000) << "\n";
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
