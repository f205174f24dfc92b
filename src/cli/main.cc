// Entry point: dispatches to a subcommand and turns its Status into one error line
// on stderr and an exit code (1 for errors, 2 for a wrong command line).
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cellcube/h5ad.h"
#include "cli/commands.h"
#include "util/isolate.h"
#include "util/text.h"
#include "util/version.h"

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
      {"distribution", "the distribution of genes' values per split (violins), from a store",
       kDistributionHelp, RunDistribution, true},
      {"de", "differential expression between two sides, per donor or per cell", kDeHelp, RunDe,
       true},
      {"markers", "marker genes of each cell type (or another column's values)", kMarkersHelp,
       RunMarkers, true},
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
         "inspect, build, add, remove, merge, info and query read files in a child process,\n"
         "so that a damaged file gives one error line even where the HDF5 library itself\n"
         "crashes on it, and under a memory limit:\n\n"
         "  --memory-limit SIZE   the most memory the command may use: 8G, 512M, 1.5G,\n"
         "                        bytes, or off (default: $CELLCUBE_MEMORY_LIMIT, else 2G).\n"
         "                        Work that needs more fails with 'out of memory ...'.\n";
}

// Appended to the --help of the commands that run isolated.
constexpr const char kMemoryLimitHelp[] =
    "\n  --memory-limit SIZE  the most memory the command may use: 8G, 512M, 1.5G, bytes,\n"
    "                       or off (default: $CELLCUBE_MEMORY_LIMIT, else 2G)\n";

int ExitCode(const Status& s) { return s.code() == StatusCode::kUsage ? 2 : 1; }

// Finds `--memory-limit SIZE` or `--memory-limit=SIZE` among a command's arguments
// (before a `--`) and removes it, so the command's own parser never sees it.
Result<std::optional<std::string>> TakeMemoryLimit(std::vector<std::string>* args) {
  static const std::string kName = "--memory-limit";
  std::optional<std::string> value;
  for (size_t i = 0; i < args->size();) {
    const std::string& a = (*args)[i];
    if (a == "--") break;
    size_t taken = 0;
    if (a == kName) {
      if (i + 1 >= args->size())
        return Status::Usage("option '" + kName + "' needs a value (e.g. " + kName + " 4G)");
      taken = 2;
    } else if (a.rfind(kName + "=", 0) == 0) {
      taken = 1;
    } else {
      ++i;
      continue;
    }
    if (value) return Status::Usage("option '" + kName + "' given more than once");
    value = taken == 2 ? (*args)[i + 1] : a.substr(kName.size() + 1);
    args->erase(args->begin() + static_cast<std::ptrdiff_t>(i),
                args->begin() + static_cast<std::ptrdiff_t>(i + taken));
  }
  return value;
}

// Runs a command that reads untrusted files in a child process (util/isolate.h), under
// the memory limit of --memory-limit, else CELLCUBE_MEMORY_LIMIT, else 2 GiB.
Status RunIsolatedCommand(const Command& c, std::vector<std::string> args) {
  CC_ASSIGN_OR_RETURN(std::optional<std::string> given, TakeMemoryLimit(&args));
  uint64_t limit = 0;
  if (given) {
    CC_ASSIGN_OR_RETURN(limit, ParseMemoryLimit(*given, "--memory-limit"));
  } else {
    CC_ASSIGN_OR_RETURN(limit, DefaultMemoryLimit());
  }
  IsolationOptions options;
  options.memory_limit = limit;
  options.forward_signals = true;
  options.memory_limit_option = "--memory-limit";
  options.crash_advice = h5ad::kCrashedReaderAdvice;  // the commands read .h5ad files
  return RunIsolated([&] { return c.run(args); }, options);
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
    std::cout << "cellcube " << Version() << "\n";
    return 0;
  }
  std::vector<std::string> names;
  for (const auto& c : Commands()) {
    names.push_back(c.name);
    if (name != c.name) continue;
    std::vector<std::string> rest(args.begin() + 1, args.end());
    for (const auto& a : rest) {
      if (a == "-h" || a == "--help") {
        std::cout << c.help << (c.isolated ? kMemoryLimitHelp : "");
        return 0;
      }
    }
    Status s = c.isolated ? RunIsolatedCommand(c, rest) : c.run(rest);
    if (s.ok()) return 0;
    std::cout.flush();
    // Messages quote names read from files: keep them printable lines. A message listing
    // several problems (a build's inputs) has one per line, each after "\n  ".
    const std::string& message = s.message();
    size_t at = 0;
    for (bool first = true;; first = false) {
      const size_t next = message.find("\n  ", at);
      const std::string_view line(message.data() + at,
                                  (next == std::string::npos ? message.size() : next) - at);
      std::cerr << (first ? "cellcube: error: " : "  ") << PrintableLine(line, 2000) << "\n";
      if (next == std::string::npos) break;
      at = next + 3;
    }
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
